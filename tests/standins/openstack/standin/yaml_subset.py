"""A small YAML reader for the OpenStack STAND-IN, enough for the cloud-config
Trove renders with yaml.dump (block mappings/sequences, indentless
sequences, plain, single- and double-quoted scalars with line folding,
block scalars, simple flow collections). Anchors, aliases and tags are
refused (YamlError). Standard library only (no PyYAML in the stand-in).
"""

import re


class YamlError(ValueError):
    pass


_YAML_NULL = {"", "~", "null", "Null", "NULL"}
_YAML_TRUE = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "y", "Y"}
_YAML_FALSE = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "n", "N"}


def _yaml_resolve(s):
    if s in _YAML_NULL:
        return None
    if s in _YAML_TRUE and s not in ("y", "Y"):
        return True
    if s in _YAML_FALSE and s not in ("n", "N"):
        return False
    t = s.replace("_", "")
    try:
        if re.fullmatch(r"[-+]?0b[01]+", t):
            return int(t.replace("0b", ""), 2)
        if re.fullmatch(r"[-+]?0x[0-9a-fA-F]+", t):
            return int(t, 16)
        if re.fullmatch(r"[-+]?0[0-7]+", t):
            return int(t, 8)
        if re.fullmatch(r"[-+]?(0|[1-9][0-9]*)", t):
            return int(t)
        if re.fullmatch(r"[-+]?([0-9][0-9]*)?\.[0-9.]*([eE][-+][0-9]+)?", t) and t not in (".", "+.", "-."):
            return float(t)
        if t in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"):
            return float("inf")
        if t in ("-.inf", "-.Inf", "-.INF"):
            return float("-inf")
        if t in (".nan", ".NaN", ".NAN"):
            return float("nan")
    except ValueError:
        pass
    return s


def _unquote(inner, double):
    """Decode the text between the quotes (may span lines) with YAML's
    escapes (double) or '' (single) and flow line folding."""
    out = []
    protect = 0
    j = 0
    n = len(inner)
    simple = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v",
              "f": "\f", "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\",
              "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029"}
    while j < n:
        c = inner[j]
        if double and c == "\\":
            if j + 1 >= n:
                raise YamlError("dangling backslash")
            e = inner[j + 1]
            if e == "\n":
                j += 2
                while j < n and inner[j] in " \t":
                    j += 1
                continue
            if e in simple:
                out.append(simple[e])
                j += 2
            elif e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                try:
                    out.append(chr(int(inner[j + 2:j + 2 + width], 16)))
                except ValueError:
                    raise YamlError("bad escape")
                j += 2 + width
            else:
                raise YamlError("unknown escape \\%s" % e)
            protect = len(out)
            continue
        if not double and c == "'" and j + 1 < n and inner[j + 1] == "'":
            out.append("'")
            j += 2
            protect = len(out)
            continue
        if c == "\n":
            while len(out) > protect and out[-1] in (" ", "\t"):
                out.pop()
            j += 1
            breaks = 0
            while True:
                while j < n and inner[j] in " \t":
                    j += 1
                if j < n and inner[j] == "\n":
                    breaks += 1
                    j += 1
                    continue
                break
            out.append("\n" * breaks if breaks else " ")
            protect = len(out)
            continue
        out.append(c)
        j += 1
    return "".join(out)


def _find_close(text, start, quote):
    """Index of the closing quote in text (opening quote at start-1)."""
    j = start
    while j < len(text):
        c = text[j]
        if quote == '"' and c == "\\":
            j += 2
            continue
        if c == quote:
            if quote == "'" and j + 1 < len(text) and text[j + 1] == "'":
                j += 2
                continue
            return j
        j += 1
    return -1


def _strip_comment(s):
    m = re.search(r"(^|\s)#", s)
    return s[:m.start()].rstrip() if m else s.rstrip()


class _Yaml:
    def __init__(self, text):
        self.lines = text.replace("\r\n", "\n").split("\n")
        self.i = 0

    @staticmethod
    def ind(line):
        return len(line) - len(line.lstrip(" "))

    def skip(self):
        while self.i < len(self.lines):
            s = self.lines[self.i].strip()
            if s == "" or s.startswith("#") or s in ("---", "..."):
                self.i += 1
                continue
            break
        return self.i < len(self.lines)

    @staticmethod
    def split_key(content):
        """(key, rest) when content is `key: ...`, else None."""
        if content[:1] in ('"', "'"):
            close = _find_close(content, 1, content[0])
            if close < 0:
                return None
            after = content[close + 1:]
            if after == ":" or after.startswith(": ") or after.startswith(":\t"):
                return _unquote(content[1:close], content[0] == '"'), after[1:].strip()
            return None
        if content[:1] in ("[", "{", "&", "*", "!", "|", ">", "%", "@", "`") or content.startswith("- ") or content == "-":
            return None
        m = re.search(r":(\s|$)", content)
        if not m:
            return None
        key = content[:m.start()].rstrip()
        if " #" in key or key.startswith("#"):
            return None
        return _yaml_resolve(key) if key else None, content[m.end():].strip()

    def parse(self):
        if not self.skip():
            return None
        value = self.block(0)
        if self.skip():
            raise YamlError("unexpected content at line %d" % (self.i + 1))
        return value

    def block(self, min_indent):
        if not self.skip():
            return None
        line = self.lines[self.i]
        ind = self.ind(line)
        if ind < min_indent:
            return None
        content = line[ind:]
        if content == "-" or content.startswith("- "):
            return self.seq(ind)
        if self.split_key(content) is not None:
            return self.mapping(ind)
        self.i += 1
        return self.value(content.strip(), ind - 1)

    def mapping(self, ind):
        result = {}
        while self.skip():
            line = self.lines[self.i]
            if self.ind(line) != ind:
                if self.ind(line) > ind:
                    raise YamlError("bad indentation at line %d" % (self.i + 1))
                break
            content = line[ind:]
            if content == "-" or content.startswith("- "):
                break
            kv = self.split_key(content)
            if kv is None:
                raise YamlError("expected a mapping key at line %d" % (self.i + 1))
            key, rest = kv
            self.i += 1
            result[key] = self.value(rest, ind, in_map=True)
        return result

    def seq(self, ind):
        result = []
        while self.skip():
            line = self.lines[self.i]
            if self.ind(line) != ind:
                if self.ind(line) > ind:
                    raise YamlError("bad indentation at line %d" % (self.i + 1))
                break
            content = line[ind:]
            if not (content == "-" or content.startswith("- ")):
                break
            after = content[1:]
            rest = after.strip()
            if rest == "" or rest.startswith("#"):
                self.i += 1
                if self.skip() and self.ind(self.lines[self.i]) > ind:
                    result.append(self.block(ind + 1))
                else:
                    result.append(None)
                continue
            if rest == "-" or rest.startswith("- ") or self.split_key(rest) is not None:
                new_ind = ind + 1 + (len(after) - len(after.lstrip(" ")))
                self.lines[self.i] = " " * new_ind + rest
                result.append(self.block(new_ind))
                continue
            self.i += 1
            result.append(self.value(rest, ind))
        return result

    def value(self, rest, ind, in_map=False):
        """A node whose text starts with rest (the rest of the line already
        consumed); continuation lines must be indented more than ind."""
        if rest == "" or rest.startswith("#"):
            if not self.skip():
                return None
            nxt = self.lines[self.i]
            if self.ind(nxt) > ind:
                return self.block(self.ind(nxt))
            if in_map and self.ind(nxt) == ind and (nxt[ind:] == "-" or nxt[ind:].startswith("- ")):
                return self.seq(ind)
            return None
        c = rest[0]
        if c in "&*!":
            raise YamlError("anchors, aliases and tags are not supported")
        if c in "|>":
            return self.block_scalar(rest, ind)
        if c in "\"'":
            text = rest
            while _find_close(text, 1, c) < 0:
                if self.i >= len(self.lines):
                    raise YamlError("unterminated quoted scalar")
                text += "\n" + self.lines[self.i]
                self.i += 1
            close = _find_close(text, 1, c)
            tail = text[close + 1:].strip()
            if tail and not tail.startswith("#"):
                raise YamlError("text after a quoted scalar: %r" % tail)
            return _unquote(text[1:close], c == '"')
        if c in "[{":
            text = rest
            while True:
                try:
                    val, pos = _Flow(text).parse_top()
                    tail = text[pos:].strip()
                    if tail and not tail.startswith("#"):
                        raise YamlError("text after a flow collection")
                    return val
                except _FlowIncomplete:
                    if self.i >= len(self.lines):
                        raise YamlError("unterminated flow collection")
                    text += "\n" + self.lines[self.i]
                    self.i += 1
        # plain scalar, maybe over several lines
        parts = [_strip_comment(rest)]
        if "#" in rest and parts[0] != rest.rstrip():
            return _yaml_resolve(parts[0])
        blanks = 0
        while self.i < len(self.lines):
            line = self.lines[self.i]
            s = line.strip()
            if s == "":
                blanks += 1
                self.i += 1
                continue
            if self.ind(line) <= ind or s.startswith("#"):
                break
            parts.append("\n" * blanks if blanks else " ")
            parts.append(_strip_comment(s))
            blanks = 0
            self.i += 1
        # blank lines at the end belong to nobody
        return _yaml_resolve("".join(parts))

    def block_scalar(self, header, ind):
        m = re.fullmatch(r"([|>])([1-9]?)([-+]?)([1-9]?)\s*(#.*)?", header)
        if not m:
            raise YamlError("bad block scalar header %r" % header)
        style, d1, chomp, d2 = m.group(1), m.group(2), m.group(3), m.group(4)
        explicit = int(d1 or d2) if (d1 or d2) else None
        raw = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() == "" or self.ind(line) > ind:
                raw.append(line)
                self.i += 1
                continue
            break
        content_ind = None
        if explicit is not None:
            content_ind = max(ind, 0) + explicit
        else:
            for line in raw:
                if line.strip():
                    content_ind = self.ind(line)
                    break
        if content_ind is None:
            return ""
        body = [line[content_ind:] if len(line) >= content_ind else "" for line in raw]
        # trailing empty lines: chomping
        trailing = 0
        while body and body[-1].strip() == "":
            body.pop()
            trailing += 1
        if style == "|":
            text = "\n".join(body)
        else:
            # folding: a single break between two normal lines becomes a
            # space; empty lines stay breaks; more-indented lines keep theirs
            text = ""
            pending = 0
            last_more = False
            first = True
            for line in body:
                if line.strip() == "":
                    pending += 1
                    continue
                more = line[:1] in (" ", "\t")
                if first:
                    text = "\n" * pending + line
                elif not more and not last_more:
                    text += (" " if pending == 0 else "\n" * pending) + line
                else:
                    text += "\n" * (pending + 1) + line
                first = False
                last_more = more
                pending = 0
        if not body:
            return "\n" * trailing if chomp == "+" else ""
        if chomp == "-":
            return text
        if chomp == "+":
            return text + "\n" + "\n" * trailing
        return text + "\n"


class _FlowIncomplete(Exception):
    pass


class _Flow:
    def __init__(self, text):
        self.t = text
        self.p = 0

    def ws(self):
        while self.p < len(self.t) and self.t[self.p] in " \t\n":
            self.p += 1
        if self.p >= len(self.t):
            raise _FlowIncomplete()

    def parse_top(self):
        v = self.node()
        return v, self.p

    def node(self, in_map=False):
        self.ws()
        c = self.t[self.p]
        if c == "[":
            self.p += 1
            out = []
            while True:
                self.ws()
                if self.t[self.p] == "]":
                    self.p += 1
                    return out
                item = self.node()
                self.ws()
                if self.t[self.p] == ":":
                    self.p += 1
                    item = {item: self.node()}
                    self.ws()
                out.append(item)
                if self.t[self.p] == ",":
                    self.p += 1
                elif self.t[self.p] != "]":
                    raise YamlError("bad flow sequence")
        if c == "{":
            self.p += 1
            out = {}
            while True:
                self.ws()
                if self.t[self.p] == "}":
                    self.p += 1
                    return out
                key = self.node(in_map=True)
                self.ws()
                val = None
                if self.t[self.p] == ":":
                    self.p += 1
                    self.ws()
                    if self.t[self.p] in ",}":
                        val = None
                    else:
                        val = self.node(in_map=True)
                    self.ws()
                out[key] = val
                if self.t[self.p] == ",":
                    self.p += 1
                elif self.t[self.p] != "}":
                    raise YamlError("bad flow mapping")
        if c in "\"'":
            close = _find_close(self.t, self.p + 1, c)
            if close < 0:
                raise _FlowIncomplete()
            s = _unquote(self.t[self.p + 1:close], c == '"')
            self.p = close + 1
            return s
        start = self.p
        while self.p < len(self.t):
            ch = self.t[self.p]
            if ch in ",[]{}":
                break
            if ch == ":" and (self.p + 1 >= len(self.t) or self.t[self.p + 1] in " ,]}\n"):
                break
            self.p += 1
        return _yaml_resolve(_fold_plain(self.t[start:self.p]))


def _fold_plain(raw):
    """Line folding of a plain scalar spread over lines."""
    out = ""
    blanks = 0
    for k, line in enumerate(raw.strip().split("\n")):
        line = line.strip()
        if k == 0:
            out = line
        elif line == "":
            blanks += 1
        else:
            out += ("\n" * blanks if blanks else " ") + line
            blanks = 0
    return out


def yaml_load(text):
    """Parse a YAML document of the subset above; raises YamlError."""
    return _Yaml(text).parse()
