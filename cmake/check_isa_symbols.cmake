# Fails the build if an AVX2/AVX-512 kernel object defines a weak (COMDAT) symbol.
#
# The linker keeps one copy of each weak symbol across all objects. If an inline function
# with external linkage were emitted by reduce_isa.cc compiled for AVX-512, the generic path
# could end up calling that copy and crash on a CPU without AVX-512. kernels/isa.h says how
# *_isa.cc files avoid this; this script holds them to it.
# Usage: cmake -DNM=<nm> -DOBJECTS=<a.o|b.o> -P check_isa_symbols.cmake
string(REPLACE "|" ";" OBJECTS "${OBJECTS}")
foreach(object IN LISTS OBJECTS)
  execute_process(COMMAND ${NM} --defined-only -C ${object}
                  OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nm failed on ${object}")
  endif()
  string(REGEX MATCHALL "[^\n]* [WVu] [^\n]*" weak "${symbols}")
  if(weak)
    string(REPLACE ";" "\n  " weak_lines "${weak}")
    message(FATAL_ERROR "${object} defines weak symbols that could leak ISA-specific code "
                        "into other paths (see csrc/pccl/kernels/isa.h):\n  ${weak_lines}")
  endif()
endforeach()
