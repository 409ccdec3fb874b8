"""MkDocs hooks: the README is the site's user guide and CHANGELOG.md its changelog, rendered
from the files themselves (no copy to drift), with their repository-relative links rewritten
for the site; the benchmark result tables the pages link to are published beside them."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
#: Files outside docs/ that the pages link to, published under this folder of the site.
RESULTS = "benchmark-results"


def on_files(files: Files, config) -> Files:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = readme.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")
    readme = readme.replace("](benchmarks/results/", f"]({RESULTS}/")
    files.append(File.generated(config, "index.md", content=readme))
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    for table in sorted((ROOT / "benchmarks" / "results").rglob("*.md")):
        uri = f"{RESULTS}/{table.relative_to(ROOT / 'benchmarks' / 'results').as_posix()}"
        files.append(File.generated(config, uri, content=table.read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    # ../benchmarks/results/X.md (from docs/) -> the published copy.
    return re.sub(r"\]\(\.\./benchmarks/results/", f"]({RESULTS}/", markdown)
