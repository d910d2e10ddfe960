"""The Colab notebook runs end to end on CPU with a tiny budget (nbclient); any cell that raises
fails the test. The executed copy stays in tmp_path: the repository keeps the notebook without
outputs."""

import csv
import json
import os

import pytest
from PIL import Image

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'notebooks', 'close_nb201_colab.ipynb')


def test_notebook_is_stored_without_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert all(not c.outputs and c.execution_count is None for c in code)
  tagged = [c for c in code if 'parameters' in c.metadata.get('tags', [])]
  assert len(tagged) == 1 and 'REPO_URL' in tagged[0].source


def test_notebook_runs_on_cpu_with_the_smoke_budget(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  index = next(i for i, c in enumerate(nb.cells) if 'parameters' in c.metadata.get('tags', []))
  # As papermill injects parameters: a cell after the tagged one. Two epochs, one switch.
  overrides = (
    f'WORKDIR = {str(tmp_path / "run")!r}\n'
    'CPU_EPOCHS = 2\nCPU_SCHEDULE = (0, 1)\nCPU_NUM_ARCHS = 8\n'
  )
  nb.cells.insert(index + 1, nbformat.v4.new_code_cell(overrides))
  client = nbclient.NotebookClient(
    nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': REPO}}
  )
  client.execute()  # raises CellExecutionError on the first failing cell
  nbformat.write(nb, str(tmp_path / 'executed.ipynb'))
  run = tmp_path / 'run'
  for name in ('quality.png', 'by_flops.png', 'gate_kl.png'):
    with Image.open(run / name) as image:  # a real picture, not an empty or broken file
      image.verify()
      assert min(image.size) >= 100, (name, image.size)
  with open(run / 'ranking.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  with open(run / 'ranking.json') as f:
    summary = json.load(f)
  assert len(rows) == summary['num_archs'] == 8 and summary['epoch'] == 2
  assert all(0.0 <= float(r['supernet_score']) <= 1.0 for r in rows)
  text = ''.join(
    o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])
  )
  assert 'backend cpu' in text and 'restored epoch 2' in text
  assert os.path.isdir(tmp_path / 'run' / 'tensorboard')
  # The restored checkpoint ranks as the training's final ranking did (same tau, printed to 4).
  restored_tau = float(text.split('restored epoch 2 tau ')[1].split()[0])
  assert restored_tau == pytest.approx(round(summary['kendall_tau'], 4), abs=1e-9)
  # The table shows the supernet's top architectures (all 8 here) by descending score.
  html = ''.join(
    o['data']['text/html']
    for c in nb.cells
    if c.cell_type == 'code'
    for o in c.get('outputs', [])
    if 'text/html' in o.get('data', {})
  )
  shown = [cell.split('</code>')[0] for cell in html.split('<td><code>')[1:]]
  by_score = sorted(rows, key=lambda r: -float(r['supernet_score']))
  assert shown == [r['arch'] for r in by_score]
  # Three figures displayed, and the quality plot's data: a ranking after every epoch and just
  # before and after the switch at epoch 1 (rankings.jsonl).
  pictures = [
    o
    for c in nb.cells
    if c.cell_type == 'code'
    for o in c.get('outputs', [])
    if 'image/png' in o.get('data', {})
  ]
  assert len(pictures) == 3
  with open(run / 'rankings.jsonl') as f:
    when = [(r['epoch'], r['when'], r['num_blocks']) for r in map(json.loads, f)]
  assert when == [(1, 'epoch', 1), (1, 'before_switch', 1), (1, 'after_switch', 2), (2, 'epoch', 2)]
