# Writes OUT: a C file holding every migration DIR/NNN_*.sql (in name order), as
#   const char *const fl_migrations[]; const int fl_migrations_count;
# Migration N (1-based) is fl_migrations[N-1]; its number must match its file name.
# The list is globbed here, not passed in: a CMake list on a custom command's line would be
# split into separate arguments.
include(${CMAKE_CURRENT_LIST_DIR}/embed_bytes.cmake)
file(GLOB FILES ${DIR}/*.sql)
list(SORT FILES)
set(body "// generated from migrations/sqlite/NNN_*.sql by cmake/embed_migrations.cmake; do not edit\n")
set(list "")
set(n 0)
foreach(f ${FILES})
  get_filename_component(name ${f} NAME)
  math(EXPR n "${n} + 1")
  string(REGEX MATCH "^[0-9]+" num "${name}")
  math(EXPR num "${num} + 0")
  if(NOT num EQUAL n)
    message(FATAL_ERROR "migration ${name}: expected number ${n}")
  endif()
  fl_embed_bytes(${f} m${n} def)
  string(APPEND body "${def}")
  string(APPEND list "m${n},")
endforeach()
string(APPEND body "const char *const fl_migrations[] = {${list}0};\n")
string(APPEND body "const int fl_migrations_count = ${n};\n")
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
