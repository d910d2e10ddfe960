"""Every relative link of README.md and docs/*.md, and every reference to a README or docs section
in the code, points at a file and heading that exist: documentation moves, and a reference left
behind should fail here rather than send a reader nowhere."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CODE_DIRS = ('close_jax', 'configs', 'experiments', 'notebooks', 'tests')
CODE_SUFFIXES = ('.py', '.ipynb', '.md')

_FENCE = re.compile(r'^\s*(```|~~~)')
_HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
_INLINE_CODE = re.compile(r'`[^`]*`')
_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
# A reference from code: a docs page (with an optional #anchor), or the README with an anchor or
# a quoted section title ('README, "Performance"', 'README "Performance"').
_CODE_DOC_REF = re.compile(r'(?<![\w/.-])((?:docs/[\w/-]+\.md)|README\.md)(#[\w-]+)?')
_CODE_README_SECTION = re.compile(r'(?<![\w/.-])README(?:\.md)?(?:,|\s)\s*"([^"]+)"')


def _outside_fences(text: str):
  """(line number, line) of the lines outside fenced code blocks."""
  fenced = False
  for number, line in enumerate(text.splitlines(), 1):
    if _FENCE.match(line):
      fenced = not fenced
      continue
    if not fenced:
      yield number, line


def github_slug(heading: str) -> str:
  """The anchor GitHub gives a heading: rendered text, lower case, punctuation but '-' and '_'
  dropped, spaces to '-'."""
  text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link renders as its text
  text = text.replace('`', '').replace('*', '')
  text = re.sub(r'<[^>]+>', '', text)  # inline HTML
  text = re.sub(r'[^\w\- ]', '', text.lower())
  return text.replace(' ', '-')


def anchors(text: str) -> set[str]:
  """Every heading anchor of a markdown text; repeated slugs get -1, -2, ... as on GitHub."""
  seen: dict[str, int] = {}
  result = set()
  for _, line in _outside_fences(text):
    m = _HEADING.match(line)
    if not m:
      continue
    slug = github_slug(m.group(2))
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    result.add(slug if count == 0 else f'{slug}-{count}')
  return result


def headings(text: str) -> set[str]:
  """The plain titles of a markdown text's headings (for quoted-section references)."""
  return {
    m.group(2).replace('`', '') for _, line in _outside_fences(text) if (m := _HEADING.match(line))
  }


def _resolve(target: pathlib.Path, anchor: str, where: str) -> list[str]:
  if not target.exists():
    return [f'{where}: {target} does not exist']
  if (
    anchor and target.suffix == '.md' and anchor not in anchors(target.read_text(encoding='utf-8'))
  ):
    return [f'{where}: no heading with anchor #{anchor} in {target.name}']
  return []


def check_markdown(path: pathlib.Path) -> list[str]:
  """Problems of the relative links in one markdown file (external links are not fetched). A
  link's text may wrap over lines, so the file is scanned whole, fenced code blanked out."""
  text = path.read_text(encoding='utf-8')
  kept = dict(_outside_fences(text))
  lines = [kept.get(n, '') for n in range(1, len(text.splitlines()) + 1)]
  prose = _INLINE_CODE.sub(lambda m: re.sub(r'[^\n]', ' ', m.group(0)), '\n'.join(lines))
  problems = []
  for m in _LINK.finditer(prose):
    url = m.group(1)
    if re.match(r'^[a-z][a-z0-9+.-]*:', url, re.I):  # http:, https:, mailto:
      continue
    number = prose.count('\n', 0, m.start()) + 1
    file_part, _, anchor = url.partition('#')
    target = (path.parent / file_part).resolve() if file_part else path
    problems += _resolve(target, anchor, f'{path.name}:{number} ({url})')
  return problems


def check_code_references(path: pathlib.Path, root: pathlib.Path) -> list[str]:
  """Problems of the README/docs references in one code file: the page must exist, its #anchor
  and a quoted README section title must be headings of it."""
  text = path.read_text(encoding='utf-8')
  where = path.relative_to(root)
  problems = []
  for m in _CODE_DOC_REF.finditer(text):
    line = text.count('\n', 0, m.start()) + 1
    problems += _resolve(root / m.group(1), (m.group(2) or '#')[1:], f'{where}:{line}')
  readme = root / 'README.md'
  titles = headings(readme.read_text(encoding='utf-8')) if readme.exists() else set()
  for m in _CODE_README_SECTION.finditer(text):
    if m.group(1) not in titles:
      line = text.count('\n', 0, m.start()) + 1
      problems.append(f'{where}:{line}: README has no section "{m.group(1)}"')
  return problems


def _markdown_files(root: pathlib.Path) -> list[pathlib.Path]:
  return [root / 'README.md', *sorted((root / 'docs').glob('**/*.md'))]


def _code_files(root: pathlib.Path) -> list[pathlib.Path]:
  files = []
  for folder in CODE_DIRS:
    for path in sorted((root / folder).rglob('*')):
      if path.suffix not in CODE_SUFFIXES or 'results' in path.parts or not path.is_file():
        continue
      if path.resolve() != pathlib.Path(__file__).resolve():  # its examples are broken on purpose
        files.append(path)
  return files


def test_markdown_links_resolve():
  files = _markdown_files(ROOT)
  assert (ROOT / 'docs' / 'README.md') in files, 'docs/README.md (the index) is missing'
  problems = [p for path in files for p in check_markdown(path)]
  assert not problems, '\n'.join(problems)


def test_code_references_to_docs_resolve():
  files = _code_files(ROOT)
  assert any(path.name == 'base.py' for path in files)
  problems = [p for path in files for p in check_code_references(path, ROOT)]
  assert not problems, '\n'.join(problems)


def test_every_docs_page_is_reachable_from_the_index():
  index = (ROOT / 'docs' / 'README.md').read_text(encoding='utf-8')
  linked = {m.group(1).partition('#')[0] for m in _LINK.finditer(index)}
  pages = {p.name for p in (ROOT / 'docs').glob('*.md')} - {'README.md'}
  assert pages <= linked, f'docs pages not in docs/README.md: {sorted(pages - linked)}'


def test_github_slugs():
  assert github_slug('Outputs (in `--workdir`)') == 'outputs-in---workdir'
  assert github_slug('XLA:CPU flags') == 'xlacpu-flags'
  assert github_slug('NAS-Bench-301 (the DARTS space)') == 'nas-bench-301-the-darts-space'
  assert github_slug('The `model.edge_impl` key') == 'the-modeledge_impl-key'
  assert anchors('# A\n## A\n```\n# not a heading\n```\n## A\n') == {'a', 'a-1', 'a-2'}


def test_checker_finds_dangling_links_and_references(tmp_path):
  (tmp_path / 'docs').mkdir()
  (tmp_path / 'README.md').write_text(
    '# Tool\n## Set up\n[ok](docs/page.md#a-section) [gone](docs/missing.md) '
    '[bad anchor](docs/page.md#no-such) [here](#set-up) [web](https://example.org/x#y) [a\n'
    'wrapped link](docs/gone.md)\n'
    '```\n[in a code block](nowhere.md)\n```\n`[inline code](nowhere.md)`\n'
  )
  (tmp_path / 'docs' / 'page.md').write_text('# Page\n## A section\n[up](../README.md#tool)\n')
  problems = check_markdown(tmp_path / 'README.md')
  assert len(problems) == 3, problems
  assert 'missing.md does not exist' in problems[0]
  assert '#no-such' in problems[1]
  assert problems[2].startswith('README.md:3 ') and 'gone.md does not exist' in problems[2]
  assert check_markdown(tmp_path / 'docs' / 'page.md') == []

  (tmp_path / 'code').mkdir()
  code = tmp_path / 'code' / 'mod.py'
  code.write_text(
    '# fine: docs/page.md#a-section, README "Set up", quark0/darts README, C=48\n'
    '# dangling: docs/page.md#gone, docs/old.md, (README, "The GATE")\n'
  )
  problems = check_code_references(code, tmp_path)
  assert len(problems) == 3, problems
  assert all(':2' in p for p in problems)
