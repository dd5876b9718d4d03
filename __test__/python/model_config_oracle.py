"""Parses config.pbtxt texts with protobuf's own text format parser into
Triton's ModelConfig (model_config_pb2 from tritonclient), the reference for
__test__/runtime-config-fuzz.spec.ts.

Triton reads configs with protobuf's C++ parser, whose tokenizer refuses an
escape it does not know ("Invalid escape sequence in string literal."), as
"\\_" or "\\s"; Python's parser keeps them. The C++ escape rules are
checked first, so that the verdict is Triton's.

stdin: a JSON list of texts. stdout: a JSON list, one entry per text:
{"ok": true, "config": <MessageToDict, proto field names, no defaults>} or
{"ok": false, "error": "<protobuf's message>"}.
"""
import json
import sys

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2


SIMPLE_ESCAPES = set("abfnrtv\\?'\"")
HEX = set("0123456789abcdefABCDEF")


def cpp_escape_error(text):
    """The first escape protobuf's C++ tokenizer refuses, or None."""
    i, n, quote = 0, len(text), None
    while i < n:
        c = text[i]
        if quote is None:
            if c == "#":
                while i < n and text[i] != "\n":
                    i += 1
            elif c in "'\"":
                quote = c
        elif c == quote or c == "\n":
            quote = None
        elif c == "\\":
            e = text[i + 1] if i + 1 < n else ""
            if e and (e in SIMPLE_ESCAPES or e in "01234567"):
                i += 1
            elif e == "x" and i + 2 < n and text[i + 2] in HEX:
                i += 2
            elif e and e in "uU" and all(ch in HEX for ch in text[i + 2 : i + 2 + (4 if e == "u" else 8)]) and i + 2 + (4 if e == "u" else 8) <= n:
                i += 1
            else:
                return f"invalid escape \\{e} at offset {i}"
        i += 1
    return None


def parse(text):
    bad = cpp_escape_error(text)
    if bad:
        return {"ok": False, "error": f"C++ tokenizer: {bad}"}
    try:
        msg = text_format.Parse(text, model_config_pb2.ModelConfig())
    except Exception as e:  # ParseError, and UnicodeError / ValueError on odd bytes
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    return {"ok": True, "config": json_format.MessageToDict(msg, preserving_proto_field_name=True)}


json.dump([parse(t) for t in json.load(sys.stdin)], sys.stdout)
