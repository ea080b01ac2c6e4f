/* list.h — flingd's one intrusive doubly linked list (the shape of libuv's queue.h and the
 * Linux kernel's list.h). A node is a field inside its owner; a list is a sentinel node that
 * points at itself when empty. Insert and remove are O(1) and never allocate; a removed node
 * points at itself, so "is it linked?" is one compare. The owner of a node owns its memory;
 * the list only borrows it while linked. */
#ifndef FL_LIST_H
#define FL_LIST_H

#include <stddef.h>

typedef struct fl_list {
    struct fl_list *prev, *next;
} fl_list;

/* fl_list_init makes l an empty list, or an unlinked node. */
static inline void fl_list_init(fl_list *l) { l->prev = l->next = l; }

/* fl_list_empty returns 1 if list l has no nodes (or node l is not linked). */
static inline int fl_list_empty(const fl_list *l) { return l->next == l; }

/* fl_list_push_tail links node n (unlinked) at the end of list l. */
static inline void fl_list_push_tail(fl_list *l, fl_list *n)
{
    n->next = l;
    n->prev = l->prev;
    l->prev->next = n;
    l->prev = n;
}

/* fl_list_push_head links node n (unlinked) at the front of list l. */
static inline void fl_list_push_head(fl_list *l, fl_list *n)
{
    n->prev = l;
    n->next = l->next;
    l->next->prev = n;
    l->next = n;
}

/* fl_list_remove unlinks node n from its list; a node not linked is left as it is. */
static inline void fl_list_remove(fl_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* fl_list_first returns the first node of l, or NULL if l is empty. */
static inline fl_list *fl_list_first(const fl_list *l) { return l->next == l ? NULL : l->next; }

/* fl_list_entry returns the owner of type `type` whose field `member` is node ptr. */
#define fl_list_entry(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* fl_list_each walks list l with node pointers pos and tmp; pos may be removed (or freed) in
 * the body, since tmp already holds the next node. */
#define fl_list_each(pos, tmp, l) for ((pos) = (l)->next, (tmp) = (pos)->next; (pos) != (l); (pos) = (tmp), (tmp) = (pos)->next)

#endif
