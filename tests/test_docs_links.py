"""Every relative link of the project's Markdown documentation points to an existing file or folder.

Checked: README.md, docs/**/*.md, and the READMEs of demo/, dev/, datasets/ and
benchmarks/RESULTS.md where present. A link is a Markdown link or image (``[text](target)``,
``![alt](target)``, a reference definition ``[ref]: target``) or an HTML ``<img src=...>`` /
``<a href=...>``, outside fenced code blocks and code spans. External targets (``http:``, ``https:``,
``mailto:``) and pure ``#anchors`` are skipped; ``#anchor`` and ``?query`` suffixes are stripped;
the path is resolved relative to the file that contains it (``/path``: from the repository root).
"""

import glob
import os
import re
import tempfile
import unittest
from typing import List, Tuple
from urllib.parse import unquote

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DOC_FILES = (
    "README.md",
    "docs/**/*.md",
    "demo/README.md",
    "dev/README.md",
    "datasets/README.md",
    "benchmarks/RESULTS.md",
)

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_MD_LINK = re.compile(r"\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML_LINK = re.compile(
    r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", re.I
)
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ftp:, ...


def doc_files(repo: str = REPO) -> List[str]:
    """The documentation files that exist, as absolute paths, sorted and without duplicates."""
    found = set()
    for pattern in DOC_FILES:
        for path in glob.glob(os.path.join(repo, pattern), recursive=True):
            if os.path.isfile(path):
                found.add(os.path.abspath(path))
    return sorted(found)


def links(text: str) -> List[Tuple[int, str]]:
    """(line number, target) of every link in Markdown ``text``, outside code."""
    out = []
    fence = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _FENCE.match(line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            continue
        if fence is not None:
            continue
        line = _CODE_SPAN.sub("", line)
        targets = [m.group(1) for m in _MD_LINK.finditer(line)]
        targets += [m.group(1) for m in _REF_DEF.finditer(line)]
        targets += [m.group(1).strip("\"'") for m in _HTML_LINK.finditer(line)]
        for target in targets:
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            out.append((lineno, target.strip()))
    return out


def broken_links(path: str, repo: str = REPO) -> List[str]:
    """``file:line: target`` for every relative link of ``path`` that resolves to nothing."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    broken = []
    for lineno, target in links(text):
        if not target or target.startswith("#") or _EXTERNAL.match(target):
            continue
        local = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if not local:
            continue
        if local.startswith("/"):
            resolved = os.path.join(repo, local.lstrip("/"))
        else:
            resolved = os.path.join(os.path.dirname(path), local)
        if not os.path.exists(resolved):
            broken.append(f"{os.path.relpath(path, repo)}:{lineno}: {target}")
    return broken


class TestDocsLinks(unittest.TestCase):
    def test_docs_exist(self):
        files = [os.path.relpath(p, REPO) for p in doc_files()]
        self.assertIn("README.md", files)
        self.assertTrue(any(f.startswith("docs" + os.sep) for f in files), files)

    def test_relative_links_resolve(self):
        broken = [b for path in doc_files() for b in broken_links(path)]
        self.assertEqual(broken, [], "broken relative links:\n" + "\n".join(broken))

    def test_checker_finds_a_broken_link(self):
        """The checker itself: a missing target is reported; valid, external and code links are not."""
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "docs", "sub"))
            open(os.path.join(d, "docs", "sub", "there.md"), "w").close()
            open(os.path.join(d, "pic.jpg"), "w").close()
            doc = os.path.join(d, "docs", "guide.md")
            with open(doc, "w", encoding="utf-8") as f:
                f.write(
                    '[ok](sub/there.md#part) [ok dir](sub/) ![pic](../pic.jpg "title")\n'
                    '<img src="../pic.jpg" width="10"> [root](/pic.jpg) [[`x`](#anchor)]\n'
                    "[web](https://example.com/missing.md) [mail](mailto:a@b.c)\n"
                    "`[code](missing_in_code_span.md)`\n"
                    "```\n[fenced](missing_in_fence.md)\n```\n"
                    "[gone](sub/missing.md#x) ![gone pic](missing.png)\n"
                    '<img src="nowhere.jpg">\n'
                    "[ref]: ../missing_ref.md\n"
                )
            self.assertEqual(
                broken_links(doc, repo=d),
                [
                    os.path.join("docs", "guide.md") + ":8: sub/missing.md#x",
                    os.path.join("docs", "guide.md") + ":8: missing.png",
                    os.path.join("docs", "guide.md") + ":9: nowhere.jpg",
                    os.path.join("docs", "guide.md") + ":10: ../missing_ref.md",
                ],
            )


if __name__ == "__main__":
    unittest.main()
