"""A small Markdown-to-HTML renderer for the tables and notes coroseg writes (``summary.md``).

No dependency: only what coroseg's own Markdown uses is supported (see :func:`markdown_to_html`).
"""

from __future__ import annotations

import html
import re

__all__ = ["markdown_to_html"]


def _inline_md(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", t)
    return t


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def markdown_to_html(text: str) -> str:
    """Render the simple Markdown that coroseg writes (headings, pipe tables, lists, paragraphs).

    Supported: ``#``..``######`` headings, GitHub pipe tables (header row + ``|---|`` row;
    ``:`` alignment honoured), ``-``/``*`` bullet lists, fenced code blocks, paragraphs,
    and inline `` `code` ``, ``**bold**``, ``*italic*``. Everything is HTML-escaped; links
    are not turned into anchors (the report has no external links).

    Examples
    --------
    >>> print(markdown_to_html("| a | b |\\n|---|--:|\\n| 1 | 2 |"))
    <table class="md">
    <thead><tr><th>a</th><th style="text-align:right">b</th></tr></thead>
    <tbody>
    <tr><td>1</td><td style="text-align:right">2</td></tr>
    </tbody>
    </table>
    """
    lines = text.splitlines()
    out: list[str] = []
    para: list[str] = []
    i = 0

    def flush() -> None:
        if para:
            out.append("<p>" + " ".join(_inline_md(p) for p in para) + "</p>")
            para.clear()

    sep = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            flush()
            n = min(6, len(m.group(1)) + 2)  # page already has h1/h2
            out.append(f"<h{n}>{_inline_md(m.group(2).strip())}</h{n}>")
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and sep.match(lines[i + 1]):
            flush()
            head = _cells(line)
            aligns = []
            for c in _cells(lines[i + 1]):
                aligns.append("right" if c.endswith(":") and not c.startswith(":")
                              else "center" if c.startswith(":") and c.endswith(":") else "")
            aligns += [""] * (len(head) - len(aligns))

            def cell(tag: str, txt: str, k: int, aligns: list[str] = aligns) -> str:
                style = f' style="text-align:{aligns[k]}"' if k < len(aligns) and aligns[k] else ""
                return f"<{tag}{style}>{_inline_md(txt)}</{tag}>"

            rows = [f"<thead><tr>{''.join(cell('th', h, k) for k, h in enumerate(head))}</tr></thead>", "<tbody>"]
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append("<tr>" + "".join(cell("td", c, k) for k, c in enumerate(_cells(lines[i]))) + "</tr>")
                i += 1
            rows.append("</tbody>")
            out.append('<table class="md">\n' + "\n".join(rows) + "\n</table>")
            continue
        if re.match(r"^\s*[-*]\s+", line):
            flush()
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                items.append("<li>" + _inline_md(re.sub(r"^\s*[-*]\s+", "", lines[i])) + "</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        if not line.strip():
            flush()
        else:
            para.append(line.strip())
        i += 1
    flush()
    return "\n".join(out)
