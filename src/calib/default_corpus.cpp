// The built-in calibration corpus. Written for fp4kit: short documents of the kinds of text a language
// model reads (prose, dialogue, code in several languages, math, lists, tables, JSON, other scripts),
// so that activation ranges see letters, digits, punctuation, whitespace runs and multi-byte text.
#include "calib/default_corpus.h"

#include <array>

namespace fp4kit::calib {

namespace {

constexpr std::array<std::string_view, 16> kCorpus = {
    // prose
    "The lighthouse keeper wrote in his log every evening, even when nothing happened. On most days the entry "
    "was short: wind from the north-west, two fishing boats in before dark, the lamp lit at 6:42 p.m. But on the "
    "night of the storm he filled three pages. He described how the waves climbed the rocks below the tower, how "
    "the glass rattled in its frame, and how, a little after midnight, a small light appeared far out to sea and "
    "did not move for an hour. In the morning the sea was flat and grey, and the light was gone.",

    // explanation
    "A hash table stores values in an array of buckets. To insert a key, the table computes a hash of the key, "
    "reduces it modulo the number of buckets, and places the entry there. Two keys can land in the same bucket; "
    "this is called a collision. Open addressing resolves collisions by probing the next free slot, while "
    "separate chaining keeps a short list in each bucket. When the load factor grows past a threshold, usually "
    "around 0.75, the table allocates a larger array and re-inserts every entry.",

    // dialogue
    "\"Did you bring the map?\" she asked.\n\"I thought you had it.\"\n\"I gave it to you at the station. You put "
    "it in your left pocket, next to the tickets.\"\nHe searched his coat, then his bag, then his coat again. "
    "\"Found it,\" he said at last, holding up a crumpled square of paper. \"It was under the sandwiches.\"",

    // Python
    "import math\n\n\ndef mean_and_stddev(values: list[float]) -> tuple[float, float]:\n"
    "    \"\"\"Return the mean and the population standard deviation.\"\"\"\n"
    "    if not values:\n        raise ValueError(\"values must not be empty\")\n"
    "    mean = sum(values) / len(values)\n"
    "    variance = sum((v - mean) ** 2 for v in values) / len(values)\n"
    "    return mean, math.sqrt(variance)\n\n\n"
    "if __name__ == \"__main__\":\n    print(mean_and_stddev([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]))  # (5.0, 2.0)\n",

    // C++
    "#include <algorithm>\n#include <vector>\n\n// Returns the k largest elements, largest first.\n"
    "template <typename T>\nstd::vector<T> top_k(std::vector<T> items, std::size_t k) {\n"
    "  k = std::min(k, items.size());\n"
    "  std::partial_sort(items.begin(), items.begin() + k, items.end(), std::greater<T>{});\n"
    "  items.resize(k);\n  return items;\n}\n",

    // shell, SQL and JSON
    "$ find . -name '*.log' -mtime +7 -print0 | xargs -0 rm -f\n"
    "$ du -sh /var/cache/* 2>/dev/null | sort -h | tail -n 5\n\n"
    "SELECT city, COUNT(*) AS orders, ROUND(AVG(total), 2) AS avg_total\nFROM orders\n"
    "WHERE created_at >= '2024-01-01'\nGROUP BY city\nHAVING COUNT(*) > 100\nORDER BY avg_total DESC;\n\n"
    "{\"id\": 8127, \"name\": \"sensor-14\", \"active\": true, \"readings\": [21.5, 21.7, null, 22.0], "
    "\"location\": {\"lat\": 59.3293, \"lon\": 18.0686}}",

    // math
    "Theorem. For every integer n >= 1, 1 + 2 + ... + n = n(n + 1)/2.\nProof by induction. For n = 1 both sides "
    "equal 1. Suppose the formula holds for n. Then 1 + 2 + ... + n + (n + 1) = n(n + 1)/2 + (n + 1) = "
    "(n + 1)(n + 2)/2, which is the formula for n + 1. QED.\n"
    "Example: the quadratic x^2 - 5x + 6 = 0 factors as (x - 2)(x - 3) = 0, so x = 2 or x = 3. "
    "With the formula x = (-b ± √(b² - 4ac)) / 2a: √(25 - 24) = 1, giving (5 ± 1)/2. "
    "Also ∑_{k=0}^{∞} 1/2^k = 2, e^{iπ} + 1 = 0, and 0.1 + 0.2 = 0.30000000000000004 in binary floating point.",

    // lists and a table
    "Packing list for a three-day hike:\n1. Tent, sleeping bag (rated to -5 °C) and mat\n2. Stove, 2 gas "
    "canisters, lighter\n3. Water filter and two 1-litre bottles\n4. Food: 6 meals, 12 snack bars, coffee\n"
    "5. First-aid kit, headlamp, spare batteries\n- Optional: camera, book, playing cards\n\n"
    "| Day | Distance (km) | Ascent (m) | Camp |\n|-----|---------------|------------|------|\n"
    "| 1   | 14.2          | 820        | Lake Aursjøen |\n| 2   | 18.5          | 1,140      | Stone hut |\n"
    "| 3   | 11.0          | 310        | — |",

    // numbers and dates
    "Quarterly report, Q3 2024: revenue 4,812,300 USD (+12.4% year over year), operating costs 3,975,150 USD, "
    "margin 17.4%. Headcount went from 212 to 238. The next review is on 2024-11-05 at 09:30 UTC; call "
    "+1 (555) 010-4477 or write to finance@example.org. Invoice #A-2024-00917 is due in 30 days.",

    // German and French
    "Die Bahn hatte wieder einmal Verspätung, also setzte sich Jana in das kleine Café am Bahnhof und bestellte "
    "einen Kaffee. Draußen regnete es; die Straßenbahn fuhr vorbei, und über der Tür hing ein Schild: »Heute "
    "frische Brötchen«.\n"
    "Le marché ouvre à sept heures. Les pêcheurs arrivent les premiers, puis les maraîchers avec leurs paniers "
    "de tomates, de courgettes et d'herbes fraîches. À midi, il ne reste presque plus rien.",

    // Spanish and Russian
    "¿Dónde está la biblioteca? Está a dos calles de aquí, al lado de la panadería. Abre de lunes a sábado, "
    "de 9:00 a 20:00, y los niños pueden entrar gratis.\n"
    "Зима в этом году пришла рано. Уже в октябре выпал первый снег, и река покрылась тонким льдом. "
    "Дети катались на санках, а старики сидели у окна и пили горячий чай.",

    // Chinese
    "春天来了，山上的雪开始融化，小河里的水也多了起来。村子里的人们忙着耕地、播种。"
    "孩子们放学后跑到田边，看农民伯伯用机器翻土。老师说，今年的雨水比去年多，收成应该不错。"
    "计算机科学的核心问题之一是：如何用有限的资源在合理的时间内解决问题？",

    // Japanese and Korean
    "今日は朝から雨が降っています。駅までの道は少し遠いので、傘を持って早めに家を出ました。"
    "電車の中で本を読みながら、週末の旅行の計画を考えました。ホテルの予約はもう済んでいます。\n"
    "오늘 회의는 오후 세 시에 시작합니다. 자료는 미리 이메일로 보내 드렸으니 확인해 주세요.",

    // Arabic and Hindi
    "تعلم البرمجة يحتاج إلى الصبر والممارسة اليومية. ابدأ بمشاريع صغيرة، ثم زد الصعوبة تدريجيا.\n"
    "पुस्तकालय सुबह नौ बजे खुलता है। वहाँ हर दिन बहुत से विद्यार्थी पढ़ने आते हैं।",

    // instructions and markup
    "## Installing the tool\n\n1. Download the archive for your platform.\n2. Unpack it: `tar xzf tool-1.4.2.tar.gz`\n"
    "3. Add the `bin/` directory to your `PATH`.\n\n> **Note:** on Windows, use the `.zip` file instead.\n\n"
    "<ul>\n  <li><a href=\"/docs/start\">Getting started</a></li>\n  <li><a href=\"/docs/faq\">FAQ</a></li>\n</ul>",

    // chat-style exchange with symbols and emoji
    "User: Can you convert 72 °F to Celsius?\nAssistant: Sure. C = (F − 32) × 5/9 = (72 − 32) × 5/9 = 40 × 5/9 ≈ "
    "22.2 °C.\nUser: Thanks! 👍 And 1 mile in km?\nAssistant: 1 mile = 1.609344 km, so 10 miles ≈ 16.09 km. 🚲",
};

}  // namespace

std::span<const std::string_view> default_corpus() { return kCorpus; }

}  // namespace fp4kit::calib
