// Boost.JSON compiled into the fuzz binaries (instrumented, so the fuzzer sees
// coverage inside the JSON parser too) instead of linking libboost_json.
#include <boost/json/src.hpp>
