// The HTML report of `fp4kit eval` renders in headless Chromium, with its four plots, and every number
// it shows is the JSON report's. Skips (with a message) only where chromium is not installed.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "eval_test_util.h"
#include "html_render.h"

namespace fp4kit::testing {
namespace {

// Every number cell between `from` and `to`: (field, value attribute, text shown).
struct Cell {
  std::string field, value, text;
};
std::vector<Cell> cells(const std::string& dom, size_t from, size_t to) {
  std::vector<Cell> out;
  for (size_t td = dom.find("<td class=\"num\"", from); td != std::string::npos && td < to;
       td = dom.find("<td class=\"num\"", td + 1)) {
    const size_t text = dom.find('>', td) + 1;
    out.push_back({attribute(dom, td, "data-field"), attribute(dom, td, "data-value"),
                   dom.substr(text, dom.find('<', text) - text)});
  }
  return out;
}

// The JSON value at a dotted path ("kld.percentiles.3.value").
double at(const nlohmann::json& j, const std::string& path) {
  const nlohmann::json* p = &j;
  std::stringstream s(path);
  for (std::string k; std::getline(s, k, '.');) p = p->is_array() ? &(*p)[std::stoul(k)] : &(*p)[k];
  return p->get<double>();
}

void expect_cell(const Cell& c, double want) {
  EXPECT_EQ(std::stod(c.value), want) << c.field;  // the value the page holds is the JSON's
  const double shown = std::stod(c.text);          // six significant digits
  EXPECT_TRUE(std::fabs(shown - want) <= 5.0001e-6 * std::fabs(want)) << c.field << " shows " << c.text;
}

TEST(EvalHtml, RendersTheJsonNumbersInChromium) {
  const std::string chromium = chromium_path();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed: the HTML report was not rendered";
  const std::string html = fresh_temp_dir("eval-html") + "/report.html";
  const EvalRun e = run_eval(converted_tiny(modelopt_args()), tiny(), "--html " + html + " --max-kld 1 --min-top1 0");
  ASSERT_EQ(e.command.exit_code, 0) << e.command.output;
  const std::string dom = render(chromium, html);
  ASSERT_NE(dom.find("data-rendered=\"yes\""), std::string::npos) << "the page's script did not finish";
  EXPECT_NE(dom.find("<h1 id=\"verdict-line\">PASS"), std::string::npos);
  size_t plots = 0;
  for (size_t p = dom.find("<svg"); p != std::string::npos; p = dom.find("<svg", p + 1)) ++plots;
  EXPECT_EQ(plots, 4u);  // KLD histogram, KLD along a sequence, per-layer KLD, per-layer top-1
  for (const char* outside : {"<link", "<img", "src=\"http", "href=\"http"})
    EXPECT_EQ(dom.find(outside), std::string::npos);

  const nlohmann::json& s = e.report["statistics"];
  const size_t stats = dom.find("id=\"stats\""), layers = dom.find("id=\"layers\"");
  ASSERT_NE(stats, std::string::npos);
  ASSERT_NE(layers, std::string::npos);
  const std::vector<Cell> stat_cells = cells(dom, stats, layers);
  EXPECT_EQ(stat_cells.size(), 25u + s["kld"]["percentiles"].size() + s["p_diff"]["percentiles"].size());
  for (const Cell& c : stat_cells) expect_cell(c, at(s, c.field));
  bool has_mean_kld = false;
  for (const Cell& c : stat_cells) has_mean_kld |= c.field == "kld.mean";
  EXPECT_TRUE(has_mean_kld);

  // Per layer: the whole layer's row, then one row per kind of weight, 4 numbers each.
  std::vector<const nlohmann::json*> rows;
  for (const auto& l : e.report["attribution"]) {
    rows.push_back(&l);
    for (const auto& k : l["kinds"]) rows.push_back(&k);
  }
  ASSERT_EQ(rows.size(), 4u * 4u);
  const std::vector<Cell> layer_cells = cells(dom, layers, dom.size());
  ASSERT_EQ(layer_cells.size(), 4u * rows.size());
  for (size_t i = 0; i < layer_cells.size(); ++i)
    expect_cell(layer_cells[i], (*rows[i / 4])[layer_cells[i].field].get<double>());
}

}  // namespace
}  // namespace fp4kit::testing
