#!/usr/bin/env python3
"""Writes the seed corpus in corpus/safetensors_header/: small valid and invalid safetensors files (< 4 KB).

Run from anywhere: python3 fuzz/make_corpus.py. Needs only the standard library; the "real_*" seeds
take real tensor entries (names, dtypes, shapes, bytes) from tests/data/dsv4-tiny and the oracles.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "safetensors_header")
DATA = os.path.join(HERE, "..", "tests", "data")
BITS = {"BOOL": 8, "U8": 8, "I8": 8, "U16": 16, "I16": 16, "F16": 16, "BF16": 16, "U32": 32, "I32": 32,
        "F32": 32, "U64": 64, "I64": 64, "F64": 64, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F4": 4,
        "F6_E2M3": 6, "F6_E3M2": 6, "C64": 64}


def raw(header: bytes, data: bytes = b"", length=None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def build(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes); contiguous layout like the reference writer."""
    h, data = {}, b""
    if metadata is not None:
        h["__metadata__"] = metadata
    for name, dtype, shape, payload in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    text = json.dumps(h, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return raw(text, data)


def nbytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return n * BITS[dtype] // 8


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def real_seed(path, budget=3500, max_tensor=256):
    """Real entries of a real file whose data is small, with their real bytes, re-laid contiguously."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    picked, size = [], 0
    for name, e in header.items():
        b, end = e["data_offsets"]
        if end - b > max_tensor:
            continue
        cost = len(name) + 80 + (end - b)
        if size + cost > budget:
            break
        picked.append((name, e["dtype"], e["shape"], blob[8 + n + b:8 + n + end]))
        size += cost
    return build(picked, meta)


def seeds():
    s = {}
    s["valid_one_f32"] = build([("w", "F32", [2, 2], bytes(range(16)))])
    s["valid_all_dtypes"] = build([("t." + d, d, [2, 4], bytes(nbytes(d, [2, 4]))) for d in BITS],
                                  {"format": "pt"})
    s["valid_edge_shapes"] = build([("scalar", "F32", [], b"\0\0\x80\x3f"), ("empty", "BF16", [0, 5], b""),
                                    ("fp4", "F4", [3, 2], b"\x12\x34\x56")], {"producer": "fp4kit"})
    s["valid_empty_header"] = raw(b"{}      ")
    s["valid_gaps_trailing"] = raw(json.dumps({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 8, 12)},
                                              separators=(",", ":")).encode(), bytes(20))
    s["valid_unpadded"] = build([("x", "I64", [1], bytes(8))], pad=False)
    s["real_dsv4_shard1"] = real_seed(os.path.join(DATA, "dsv4-tiny", "model-00001-of-00003.safetensors"))
    s["real_modelopt"] = real_seed(os.path.join(DATA, "oracles", "nvfp4", "modelopt_nvfp4.safetensors"))
    with open(os.path.join(DATA, "dsv4-tiny", "model-00002-of-00003.safetensors"), "rb") as f:
        s["bad_real_header_prefix"] = f.read(4000)  # real header, cut off mid-JSON
    s["bad_short"] = b"\x10\0\0"
    s["bad_zero_length"] = raw(b"", bytes(8))
    s["bad_lying_length"] = raw(b"{}      ", length=4096)
    s["bad_not_object"] = raw(b"[1,2]   ")
    s["bad_invalid_json"] = raw(b'{"a":{"dtype":')
    s["bad_nul_padding"] = raw(b"{}\0\0\0\0\0\0")
    s["bad_overlap"] = raw(json.dumps({"a": entry("U8", [8], 0, 8), "b": entry("U8", [8], 4, 12)}).encode(), bytes(12))
    s["bad_duplicate"] = raw(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                             b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2))
    s["bad_unknown_dtype"] = raw(json.dumps({"w": entry("F7", [1], 0, 1)}).encode(), b"\0")
    s["bad_size_mismatch"] = raw(json.dumps({"w": entry("F32", [2, 2], 0, 12)}).encode(), bytes(16))
    s["bad_out_of_range"] = raw(json.dumps({"w": entry("F32", [4], 0, 16)}).encode(), bytes(8))
    s["bad_overflow"] = raw(json.dumps({"w": entry("F32", [2**32, 2**32, 2**32], 0, 0)}).encode())
    s["bad_negative_dim"] = raw(json.dumps({"w": entry("F32", [-3, 4], 0, 0)}).encode())
    s["bad_f4_odd"] = raw(json.dumps({"w": entry("F4", [3], 0, 2)}).encode(), bytes(2))
    s["bad_metadata"] = raw(json.dumps({"__metadata__": {"format": 1}}).encode())
    s["bad_extra_key"] = raw(b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":0}}', b"\0")
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, blob in seeds().items():
        assert len(blob) < 4096, (name, len(blob))
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(blob)
    print(f"wrote {len(seeds())} seeds to {OUT}")


if __name__ == "__main__":
    main()
