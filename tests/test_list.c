/* test_list.c — daemon/list.h: order, removal during a walk, re-linking, emptiness. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "list.h"

typedef struct item { int v; fl_list node; } item;

static int values(fl_list *l, int *out, int max)
{
    fl_list *p, *t;
    int n = 0;
    fl_list_each(p, t, l)
        if (n < max)
            out[n++] = fl_list_entry(p, item, node)->v;
    return n;
}

static void order_and_removal(void **state)
{
    (void)state;
    fl_list l;
    fl_list_init(&l);
    assert_true(fl_list_empty(&l));
    assert_null(fl_list_first(&l));
    item it[5];
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        fl_list_init(&it[i].node);
    }
    fl_list_push_tail(&l, &it[1].node);
    fl_list_push_tail(&l, &it[2].node);
    fl_list_push_head(&l, &it[0].node);
    fl_list_push_tail(&l, &it[3].node);
    int got[8];
    assert_int_equal(values(&l, got, 8), 4);
    assert_memory_equal(got, ((int[]){ 0, 1, 2, 3 }), 4 * sizeof(int));
    assert_ptr_equal(fl_list_entry(fl_list_first(&l), item, node), &it[0]);

    /* Removing the node being visited during a walk. */
    fl_list *p, *t;
    fl_list_each(p, t, &l)
        if (fl_list_entry(p, item, node)->v % 3 != 0)
            fl_list_remove(p);
    assert_int_equal(values(&l, got, 8), 2);
    assert_memory_equal(got, ((int[]){ 0, 3 }), 2 * sizeof(int));
    assert_true(fl_list_empty(&it[1].node));   /* removed nodes point at themselves */
    fl_list_remove(&it[1].node);                /* and removing again is harmless */
    fl_list_remove(&it[4].node);                /* as is removing one never linked */
    fl_list_push_tail(&l, &it[1].node);         /* a removed node can be linked again */
    assert_int_equal(values(&l, got, 8), 3);
    assert_memory_equal(got, ((int[]){ 0, 3, 1 }), 3 * sizeof(int));
    fl_list_each(p, t, &l)
        fl_list_remove(p);
    assert_true(fl_list_empty(&l));
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(order_and_removal) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
