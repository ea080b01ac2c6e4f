# fl_embed_bytes(FILE NAME OUT): sets OUT to the C definition of FILE's bytes as a NUL-terminated
#   static const char NAME[] = {0x..,...,0x00};
# shared by the embed scripts (migrations, the dashboard).
function(fl_embed_bytes file name out)
  file(READ ${file} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  set(${out} "static const char ${name}[] = {${hex}0x00};\n" PARENT_SCOPE)
endfunction()
