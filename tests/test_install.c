/* test_install.c — `cmake --install` of this build into a temp DESTDIR: the layout (binaries,
 * libfling with its SONAME, fling.h, fling.pc, the unit, the configuration), a re-install that
 * keeps an edited configuration, the unit checked by systemd-analyze verify when it exists, and
 * a program compiled with `pkg-config --cflags --libs fling` against the staged files that
 * fires a job at a real flingd. PKG_CONFIG_SYSROOT_DIR points pkg-config's -I and -L into the
 * DESTDIR, as it would for a cross build: fling.pc itself names the real prefix. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define JOB_WAIT_MS 10000
#define CMD_MAX 4096

static char stage[64];

/* Runs a shell command line built from fmt; returns its exit status (-1 if it did not exit). */
__attribute__((format(printf, 1, 2)))
static int sh(const char *fmt, ...)
{
    char cmd[CMD_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The staged path of an installed absolute path. */
static const char *staged(const char *path)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s%s", stage, path);
    return buf;
}

static void expect_file(const char *path, int executable)
{
    struct stat st;
    if (stat(staged(path), &st) < 0 || !S_ISREG(st.st_mode))
        fail_msg("not installed: %s", path);
    if (executable && !(st.st_mode & S_IXUSR))
        fail_msg("not executable: %s", path);
}

/* Reads a staged file into buf (NUL-terminated). */
static void read_staged(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(staged(path), "r");
    if (!f)
        fail_msg("cannot read %s: %s", staged(path), strerror(errno));
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static int install_into_stage(void)
{
    return sh("DESTDIR=%s '%s' --install '%s' >%s/install.log 2>&1", stage, FL_CMAKE_COMMAND,
              FL_BUILD_DIR, stage);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(stage, sizeof stage, "/tmp/flinginstall.XXXXXX");
    return mkdtemp(stage) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return flh_remove_dir(stage) < 0 ? -1 : 0;
}

static void test_layout(void **state)
{
    (void)state;
    assert_int_equal(install_into_stage(), 0);
    expect_file(FL_BINDIR "/flingd", 1);
    expect_file(FL_BINDIR "/fling", 1);
    expect_file(FL_LIBDIR "/libfling.a", 0);
    expect_file(FL_LIBDIR "/libfling.so." FL_VERSION, 0);
    expect_file(FL_INCLUDEDIR "/fling.h", 0);
    expect_file(FL_LIBDIR "/pkgconfig/fling.pc", 0);
    expect_file(FL_UNIT_DIR "/flingd.service", 0);
    expect_file(FL_CONF_FILE, 0);
    expect_file(FL_DOCDIR "/examples/flingd.conf", 0);
    expect_file(FL_DOCDIR "/LICENSE", 0);
    expect_file(FL_MANDIR "/man1/fling.1", 0);
    expect_file(FL_MANDIR "/man8/flingd.8", 0);
    /* both carry the one version from CMakeLists.txt */
    assert_int_equal(sh("grep -q '\"fling " FL_VERSION "\"' '%s'", staged(FL_MANDIR "/man8/flingd.8")), 0);
    assert_int_equal(sh("grep -q '\"fling " FL_VERSION "\"' '%s'", staged(FL_MANDIR "/man1/fling.1")), 0);
    /* the development link, and the runtime name programs record */
    char lib[1024];
    snprintf(lib, sizeof lib, "%s", staged(FL_LIBDIR "/libfling.so"));
    assert_int_equal(access(lib, R_OK), 0);
    assert_int_equal(sh("readelf -d '%s' | grep -q 'SONAME.*\\[libfling\\.so\\.%d\\]'", lib,
                        FL_VERSION_MAJOR), 0);

    char unit[4096];
    read_staged(FL_UNIT_DIR "/flingd.service", unit, sizeof unit);
    assert_non_null(strstr(unit, "\nExecStart=" FL_BINDIR "/flingd -c " FL_CONF_FILE "\n"));
    assert_non_null(strstr(unit, "\nUser=fling\n"));
    assert_non_null(strstr(unit, "\nStateDirectory=fling\n"));
    assert_non_null(strstr(unit, "\nProtectSystem=strict\n"));
    assert_non_null(strstr(unit, "\nExecReload=/bin/kill -HUP $MAINPID\n"));

    /* the installed configuration is one the installed flingd accepts */
    assert_int_equal(sh("'%s" FL_BINDIR "/flingd' --check-config -c '%s" FL_CONF_FILE "' >/dev/null",
                        stage, stage), 0);
}

/* An operator's edit survives a second install; the example stays the shipped one. */
static void test_reinstall_keeps_config(void **state)
{
    (void)state;
    FILE *f = fopen(staged(FL_CONF_FILE), "a");
    assert_non_null(f);
    fputs("; edited by the operator\n", f);
    fclose(f);
    assert_int_equal(install_into_stage(), 0);
    char conf[8192];
    read_staged(FL_CONF_FILE, conf, sizeof conf);
    assert_non_null(strstr(conf, "; edited by the operator\n"));
}

/* systemd-analyze verify, with the unit's paths pointing into the stage, and its offline
 * security review: the sandbox keeps the exposure at most 2.0 of 10 (1.5 with systemd 252). */
static void test_unit_verifies(void **state)
{
    (void)state;
    if (sh("command -v systemd-analyze >/dev/null") != 0) {
        print_message("systemd-analyze not found: unit not verified\n");
        skip();
    }
    char unit[4096];
    read_staged(FL_UNIT_DIR "/flingd.service", unit, sizeof unit);
    char path[256];
    snprintf(path, sizeof path, "%s/flingd.service", stage);
    assert_int_equal(sh("sed 's|^ExecStart=|ExecStart=%s|' '%s' >'%s'", stage,
                        staged(FL_UNIT_DIR "/flingd.service"), path), 0);
    int rc = sh("SYSTEMD_LOG_LEVEL=warning systemd-analyze verify '%s' >%s/verify.log 2>&1", path,
                stage);
    /* an unknown key or a bad value is only a warning: any output fails the check */
    if (rc != 0 || sh("test ! -s %s/verify.log", stage) != 0) {
        sh("cat %s/verify.log >&2", stage);
        fail_msg("systemd-analyze verify: exit %d", rc);
    }
    rc = sh("systemd-analyze security --offline=yes --threshold=20 '%s' >%s/security.log 2>&1", path, stage);
    if (rc != 0) {
        sh("grep -F '✗' %s/security.log >&2; tail -n 1 %s/security.log >&2", stage, stage);
        fail_msg("systemd-analyze security: exposure above 2.0 (exit %d)", rc);
    }
}

static const char program[] =
    "#include <fling.h>\n"
    "#include <stdio.h>\n"
    "int main(int argc, char **argv)\n"
    "{\n"
    "    (void)argc;\n"
    "    fling_client *c = fling_client_new(argv[1], NULL);\n"
    "    fling_response res;\n"
    "    int rc = c ? fling_submit(c, \"noop\", \"x\", 1, NULL, &res) : FLING_EINVAL;\n"
    "    if (rc == 0)\n"
    "        printf(\"%s\\n\", res.id);\n"
    "    fling_response_clear(&res);\n"
    "    fling_client_free(c);\n"
    "    return rc == 0 ? 0 : 1;\n"
    "}\n";

/* Builds the program with the staged fling.pc (shared, and static against libfling.a), runs
 * both against flingd and checks their jobs ran. */
static void test_link_against_installed_lib(void **state)
{
    (void)state;
    char src[128], out[128];
    snprintf(src, sizeof src, "%s/prog.c", stage);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs(program, f);
    fclose(f);
    char env[512];
    snprintf(env, sizeof env, "PKG_CONFIG_PATH=%s" FL_LIBDIR "/pkgconfig PKG_CONFIG_SYSROOT_DIR=%s",
             stage, stage);
    assert_int_equal(sh("%s pkg-config --exists fling", env), 0);
    assert_int_equal(sh("%s '%s' %s -o %s/prog %s $(%s pkg-config --cflags --libs fling)", env,
                        FL_CC, FL_TEST_CFLAGS, stage, src, env), 0);
    assert_int_equal(sh("%s '%s' %s -o %s/prog-static %s $(%s pkg-config --cflags fling) "
                        "%s" FL_LIBDIR "/libfling.a $(%s pkg-config --static --libs-only-other fling) "
                        "$(pkg-config --libs libcurl)",   /* libcurl: the system's, as docs/install.md says */
                        env, FL_CC, FL_TEST_CFLAGS, stage, src, env, stage, env), 0);

    flh_daemon d;
    assert_int_equal(flh_start(&d, "[type.noop]\nhandler = noop\n"), 0);
    const char *progs[] = { "prog", "prog-static" };
    for (size_t i = 0; i < 2; i++) {
        snprintf(out, sizeof out, "%s/%s.out", stage, progs[i]);
        /* ldd shows that the shared one loads the staged libfling, not another copy */
        if (i == 0)
            assert_int_equal(sh("LD_LIBRARY_PATH=%s" FL_LIBDIR " ldd %s/prog | grep -q '=> %s"
                                FL_LIBDIR "/libfling.so'", stage, stage, stage), 0);
        assert_int_equal(sh("LD_LIBRARY_PATH=%s" FL_LIBDIR " %s/%s %s >%s", stage, stage, progs[i],
                            d.url, out), 0);
        char id[32] = "";
        f = fopen(out, "r");
        assert_non_null(f);
        assert_non_null(fgets(id, sizeof id, f));
        fclose(f);
        id[strcspn(id, "\n")] = '\0';
        json_t *job = flh_wait_terminal(&d, id, JOB_WAIT_MS);
        assert_non_null(job);
        assert_string_equal(json_string_value(json_object_get(job, "state")), "succeeded");
        assert_string_equal(json_string_value(json_object_get(job, "type")), "noop");
        json_decref(job);
    }
    assert_int_equal(flh_stop(&d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_reinstall_keeps_config),
        cmocka_unit_test(test_unit_verifies),
        cmocka_unit_test(test_link_against_installed_lib),
    };
    return cmocka_run_group_tests_name("install", tests, group_setup, group_teardown);
}
