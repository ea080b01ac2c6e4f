/* testutil.h — shared by the integration tests: start a real flingd in a temp dir on a free
 * port (via --ready-file), talk to it over real sockets, stop it by its PID. */
#ifndef FL_TESTUTIL_H
#define FL_TESTUTIL_H
#endif
