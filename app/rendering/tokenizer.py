"""Where the tags of an HTML string are: start tags with their attributes' offsets, end tags,
comments. A small tokenizer that follows the WHATWG HTML tokenization states that decide where
a tag starts and ends (https://html.spec.whatwg.org/multipage/parsing.html#tokenization):

- data: a `<` opens a start tag when an ASCII letter follows, an end tag for `</` + letter;
  `<!--` a comment (ended by `-->`, `--!>`, or at once by `<!-->` / `<!--->`); `<!DOCTYPE`,
  any other `<!` (`<![if !mso]>`, `<![CDATA[`), `<?` and `</` + non-letter are bogus comments up
  to the next `>`; a `<` followed by anything else is text;
- a tag: its name runs to whitespace, `/` or `>`; attributes as the attribute-name and value
  states read them (double-quoted, single-quoted or unquoted values; a name may start with `=`);
  a tag cut off by the end of the input is no tag (as in a browser);
- raw text elements (`script`, `style`, `title`, `textarea`, `xmp`, `iframe`, `noembed`,
  `noframes`): no tags inside up to their end tag; after `plaintext` none at all.

Everything is an offset into the input: the caller splices the original string. Linear time:
every construct is scanned once (the stdlib `html.parser` rescans unclosed comments: 400 KB of
`<!--` took over three minutes on Python 3.11.7, CPython gh-135462).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_SPACE = "\t\n\f\r "
_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_ATTR_NAME = re.compile(r"[^\t\n\f\r />][^\t\n\f\r />=]*")
_SKIP_SPACE = re.compile(r"[\t\n\f\r ]*")
_SKIP_SPACE_SLASH = re.compile(r"[\t\n\f\r /]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_COMMENT_END = re.compile(r"--!?>")
RAW_TEXT = frozenset({"script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes"})
_RAW_TEXT_END = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in RAW_TEXT}


@dataclass(frozen=True, slots=True)
class Attr:
    name: str  # ASCII-lowercased
    start: int  # the whitespace before the attribute (removing [start, end) removes it cleanly)
    end: int  # after the value (and its closing quote)
    value_start: int  # the value itself, without quotes ([value_start, value_end) is empty for none)
    value_end: int


@dataclass(frozen=True, slots=True)
class StartTag:
    name: str  # ASCII-lowercased
    start: int  # the `<`
    end: int  # after the `>`
    attrs: tuple[Attr, ...] = field(default=())

    def attr(self, name: str) -> Attr | None:
        """The first attribute of this name (a browser ignores the later duplicates)."""
        for attr in self.attrs:
            if attr.name == name:
                return attr
        return None


@dataclass(frozen=True, slots=True)
class EndTag:
    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Comment:
    start: int  # the `<!--`
    end: int  # after the `-->` (or the end of the input)
    data_start: int
    data_end: int


Token = StartTag | EndTag | Comment


def _lower(name: str) -> str:
    return name.lower() if name.isascii() else "".join(c.lower() if c.isascii() else c for c in name)


def _tag(s: str, lt: int, n: int) -> StartTag | EndTag | None:
    """The tag opened at `lt` (`<x` or `</x`), or None when the input (`s[:n]`) ends inside it."""
    end_tag = s.startswith("</", lt, n)
    name_start = lt + (2 if end_tag else 1)
    name_end = _TAG_NAME.match(s, name_start, n).end()  # type: ignore[union-attr]
    name = _lower(s[name_start:name_end])
    attrs: list[Attr] = []
    i = name_end
    while True:
        before = i
        i = _SKIP_SPACE_SLASH.match(s, i, n).end()  # type: ignore[union-attr]
        if i >= n:
            return None
        if s[i] == ">":
            return EndTag(name, lt, i + 1) if end_tag else StartTag(name, lt, i + 1, tuple(attrs))
        name_match = _ATTR_NAME.match(s, i, n)
        assert name_match is not None  # s[i] is none of whitespace, "/", ">"
        attr_name = _lower(name_match.group())
        i = _SKIP_SPACE.match(s, name_match.end(), n).end()  # type: ignore[union-attr]
        if i < n and s[i] == "=":
            i = _SKIP_SPACE.match(s, i + 1, n).end()  # type: ignore[union-attr]
            if i >= n:
                return None
            quote = s[i]
            if quote in "\"'":
                close = s.find(quote, i + 1, n)
                if close < 0:
                    return None
                attrs.append(Attr(attr_name, before, close + 1, i + 1, close))
                i = close + 1
            else:
                value_end = _UNQUOTED.match(s, i, n).end()  # type: ignore[union-attr]
                attrs.append(Attr(attr_name, before, value_end, i, value_end))
                i = value_end
        else:
            end = name_match.end()
            attrs.append(Attr(attr_name, before, end, end, end))
            # (`i` is past the spaces: the next attribute, "/" or ">")


def tokens(s: str, start: int = 0, stop: int | None = None) -> Iterator[Token]:
    """The tags and comments of `s[start:stop]`, in order, with offsets into `s`."""
    n = len(s) if stop is None else stop
    i = start
    while True:
        lt = s.find("<", i, n)
        if lt < 0 or lt + 1 >= n:
            return
        c = s[lt + 1]
        if c.isascii() and c.isalpha():
            tag = _tag(s, lt, n)
            if tag is None:
                return
            yield tag
            i = tag.end
            if isinstance(tag, StartTag) and tag.name in RAW_TEXT:
                closing = _RAW_TEXT_END[tag.name].search(s, i, n)
                i = closing.start() if closing else n
            elif isinstance(tag, StartTag) and tag.name == "plaintext":
                return
        elif c == "/":
            nxt = s[lt + 2] if lt + 2 < n else ""
            if nxt.isascii() and nxt.isalpha():
                tag = _tag(s, lt, n)
                if tag is None:
                    return
                yield tag
                i = tag.end
            elif nxt == ">":
                i = lt + 3
            else:  # bogus comment
                close = s.find(">", lt + 2, n)
                if close < 0:
                    return
                i = close + 1
        elif c == "!" and s.startswith("--", lt + 2, n):
            data_start = lt + 4
            if s.startswith(">", data_start, n):
                yield Comment(lt, data_start + 1, data_start, data_start)
                i = data_start + 1
            elif s.startswith("->", data_start, n):
                yield Comment(lt, data_start + 2, data_start, data_start)
                i = data_start + 2
            else:
                ending = _COMMENT_END.search(s, data_start, n)
                if ending is None:
                    yield Comment(lt, n, data_start, n)
                    return
                yield Comment(lt, ending.end(), data_start, ending.start())
                i = ending.end()
        elif c in "!?":  # DOCTYPE, `<![if !mso]>`, `<![CDATA[...`, `<?xml ...>`: up to the next `>`
            close = s.find(">", lt + 2, n)
            if close < 0:
                return
            i = close + 1
        else:
            i = lt + 1
