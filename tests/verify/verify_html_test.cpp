// The HTML report renders in headless Chromium, and the numbers the rendered page shows are the
// JSON report's. Skips (with a message) only where chromium is not installed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "html_render.h"
#include "io/atomic_file.h"
#include "verify/report_html.h"
#include "verify/report_json.h"
#include "verify_test_util.h"

namespace fp4kit::testing {
namespace {

struct Cell {
  std::string value, text;
};

// Rows of the worst-tensors table: tensor name -> field -> cell.
std::map<std::string, std::map<std::string, Cell>> tensor_rows(const std::string& dom) {
  std::map<std::string, std::map<std::string, Cell>> rows;
  for (size_t at = dom.find("<tr class=\"tensor"); at != std::string::npos; at = dom.find("<tr class=\"tensor", at + 1)) {
    const std::string name = attribute(dom, at, "data-name");
    const size_t row_end = dom.find("</tr>", at);
    for (size_t td = dom.find("<td class=\"num\"", at); td != std::string::npos && td < row_end;
         td = dom.find("<td class=\"num\"", td + 1)) {
      const size_t text_begin = dom.find('>', td) + 1;
      rows[name][attribute(dom, td, "data-field")] = {attribute(dom, td, "data-value"),
                                                        dom.substr(text_begin, dom.find('<', text_begin) - text_begin)};
    }
  }
  return rows;
}

std::string write_html(const nlohmann::json& j, const std::string& tag) {
  const std::string path = fresh_temp_dir(tag) + "/report.html";
  io::write_file_atomic(path, verify::report_to_html(j));
  return path;
}

TEST(VerifyHtml, IsSelfContained) {
  const nlohmann::json j = verify::report_to_json(verify_dir(converted_tiny(modelopt_args()), true));
  const std::string page = verify::report_to_html(j);
  for (const char* outside : {"<link", "<img", "src=\"http", "href=\"http", "@import", "url(http"})
    EXPECT_EQ(page.find(outside), std::string::npos) << outside;
  // Names cannot close the embedded data's script element.
  nlohmann::json evil = j;
  evil["checkpoint"] = "</script><script>alert(1)</script>";
  EXPECT_EQ(verify::report_to_html(evil).find("</script><script>alert"), std::string::npos);
}

TEST(VerifyHtml, RendersTheJsonNumbersInChromium) {
  const std::string chromium = chromium_path();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed: the HTML report was not rendered";
  const nlohmann::json j = verify::report_to_json(verify_dir(converted_tiny(modelopt_args()), true));
  const std::string dom = render(chromium, write_html(j, "verify-html"));
  ASSERT_NE(dom.find("data-rendered=\"yes\""), std::string::npos) << "the page's script did not finish";
  EXPECT_NE(dom.find("PASS \u2014 0 failed checks, 0 warnings"), std::string::npos);
  size_t plots = 0;
  for (size_t at = dom.find("<svg"); at != std::string::npos; at = dom.find("<svg", at + 1)) ++plots;
  EXPECT_EQ(plots, 4u);  // per layer, per kind, block scales, worst tensors

  const auto rows = tensor_rows(dom);
  ASSERT_EQ(rows.size(), j["tensors_numerics"].size());
  for (const nlohmann::json& t : j["tensors_numerics"]) {
    const std::string name = t["name"];
    ASSERT_TRUE(rows.count(name)) << name;
    const auto& cells = rows.at(name);
    for (const char* field : {"sqnr_db", "expected_sqnr_db", "rel_rms", "max_abs_error", "exact_fraction"}) {
      ASSERT_TRUE(cells.count(field)) << name << " " << field;
      const Cell& c = cells.at(field);
      const double want = t[field].get<double>();
      EXPECT_EQ(std::stod(c.value), want) << name << " " << field;  // the value the page holds
      // The text shown rounds it: within half a unit of its last digit.
      double shown = std::stod(c.text);
      double unit = 0.01;
      if (std::string(field) == "exact_fraction") shown /= 100.0, unit = 1e-5;
      else if (c.text.find('e') != std::string::npos) unit = std::pow(10.0, std::floor(std::log10(std::fabs(want)))) * 1e-3;
      EXPECT_NEAR(shown, want, unit / 2 * 1.0001) << name << " " << field << " shows " << c.text;
    }
    EXPECT_EQ(cells.at("nan_values").text, std::to_string(t["nan_values"].get<uint64_t>()));
  }
}

TEST(VerifyHtml, ShowsEveryFindingOfAFailedCheckpoint) {
  const std::string chromium = chromium_path();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed: the HTML report was not rendered";
  const std::string dir = copy_checkpoint(converted_tiny(cast_args()), "verify-html-bad");
  set_f32(dir, "layers.2.ffn.experts.5.w3.weight_scale_2", 3.0f);
  const nlohmann::json j = verify::report_to_json(verify_dir(dir, false));
  ASSERT_FALSE(j["passed"].get<bool>());
  const std::string dom = render(chromium, write_html(j, "verify-html-bad"));
  ASSERT_NE(dom.find("data-rendered=\"yes\""), std::string::npos);
  EXPECT_NE(dom.find("FAIL \u2014 " + std::to_string(j["failures"].get<size_t>()) + " failed checks"), std::string::npos);
  size_t shown = 0;
  for (size_t at = dom.find("<tr class=\"finding\""); at != std::string::npos; at = dom.find("<tr class=\"finding\"", at + 1)) ++shown;
  EXPECT_EQ(shown, j["findings"].size());
  EXPECT_NE(dom.find("fusion.global_scale"), std::string::npos);
}

}  // namespace
}  // namespace fp4kit::testing
