#pragma once
// HTML reports rendered the way a person sees them: headless Chromium runs the page's scripts and
// dumps the resulting DOM, which the tests read back.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fp4kit::testing {

// The installed Chromium, "" if none.
inline std::string chromium_path() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (std::filesystem::exists(p)) return p;
  return "";
}

// The DOM after the page's scripts ran.
inline std::string render(const std::string& chromium, const std::string& html_path) {
  const std::string dom = html_path + ".dom";
  const std::string cmd = "timeout 60 " + chromium + " --headless --no-sandbox --disable-gpu --dump-dom 'file://" +
                          html_path + "' > '" + dom + "' 2>/dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(dom);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Attribute `attr` of the first tag at or after `tag_start`, "" if absent before the tag ends.
inline std::string attribute(const std::string& dom, size_t tag_start, const std::string& attr) {
  const size_t end = dom.find('>', tag_start);
  const size_t at = dom.find(" " + attr + "=\"", tag_start);
  if (at == std::string::npos || at > end) return "";
  const size_t v = at + attr.size() + 3;
  return dom.substr(v, dom.find('"', v) - v);
}

}  // namespace fp4kit::testing
