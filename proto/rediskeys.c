/* rediskeys.c — the Redis mirror's key names and hash fields (see rediskeys.h). */
#include "rediskeys.h"

#include <errno.h>
#include <stdio.h>

const fl_proto_redis_field_def fl_proto_redis_fields[FL_PROTO_REDIS_FIELDS] = {
    [FL_PROTO_REDIS_F_ID] = { FL_PROTO_RF_ID, FL_PROTO_REDIS_TEXT },
    [FL_PROTO_REDIS_F_TYPE] = { FL_PROTO_RF_TYPE, FL_PROTO_REDIS_TEXT },
    [FL_PROTO_REDIS_F_STATE] = { FL_PROTO_RF_STATE, FL_PROTO_REDIS_TEXT },
    [FL_PROTO_REDIS_F_STATUS] = { FL_PROTO_RF_STATUS, FL_PROTO_REDIS_INTEGER },
    [FL_PROTO_REDIS_F_ATTEMPTS] = { FL_PROTO_RF_ATTEMPTS, FL_PROTO_REDIS_INTEGER },
    [FL_PROTO_REDIS_F_MAX_ATTEMPTS] = { FL_PROTO_RF_MAX_ATTEMPTS, FL_PROTO_REDIS_INTEGER },
    [FL_PROTO_REDIS_F_CREATED_AT] = { FL_PROTO_RF_CREATED_AT, FL_PROTO_REDIS_OPTIONAL_TEXT },
    [FL_PROTO_REDIS_F_STARTED_AT] = { FL_PROTO_RF_STARTED_AT, FL_PROTO_REDIS_OPTIONAL_TEXT },
    [FL_PROTO_REDIS_F_FINISHED_AT] = { FL_PROTO_RF_FINISHED_AT, FL_PROTO_REDIS_OPTIONAL_TEXT },
    [FL_PROTO_REDIS_F_UPDATED_AT] = { FL_PROTO_RF_UPDATED_AT, FL_PROTO_REDIS_OPTIONAL_TEXT },
    [FL_PROTO_REDIS_F_EXIT_CODE] = { FL_PROTO_RF_EXIT_CODE, FL_PROTO_REDIS_OPTIONAL_INTEGER },
    [FL_PROTO_REDIS_F_ERROR] = { FL_PROTO_RF_ERROR, FL_PROTO_REDIS_OPTIONAL_TEXT },
};

static int fits(int n, size_t size) { return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : n; }

int fl_proto_redis_key(char *out, size_t size, const char *prefix, const char *name)
{
    return fits(snprintf(out, size, "%s%s", prefix, name), size);
}

int fl_proto_redis_job_key(char *out, size_t size, const char *prefix, int64_t id)
{
    return fits(snprintf(out, size, "%s" FL_PROTO_REDIS_JOB "%lld", prefix, (long long)id), size);
}
