"""What the DeepSeek encoder reference scripts share: loading encoding_dsv4.py from a path, and
writing their cases as UTF-8 JSON."""
import importlib.util
import json


def load_encoder(path):
    spec = importlib.util.spec_from_file_location("encoding_dsv4", path)
    encoder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(encoder)
    return encoder


def write_cases(cases, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
