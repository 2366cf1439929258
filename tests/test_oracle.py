"""The human oracle's files: written as documented, answers validated."""

import csv
import io

import numpy as np
import pytest

from bass_jax import oracle


def filled(path, rows):
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['id', 'label'])
    w.writerows(rows)


def test_write_queries_layout(tmp_path):
  x = np.random.default_rng(0).uniform(size=(20, 28, 28, 1)).astype(np.float32)
  path = oracle.write_queries(str(tmp_path), 10, [3, 7, 11], x)
  folder = tmp_path / 'queries' / '10'
  assert path == str(folder / 'manifest.csv')
  assert (folder / 'manifest.csv').read_text().splitlines() == [
      'id,label', '3,', '7,', '11,']
  for name in ('3.png', '7.png', '11.png', 'contact_sheet.png'):
    assert (folder / name).stat().st_size > 100


def test_read_answers_ok(tmp_path):
  p = tmp_path / 'm.csv'
  filled(p, [[3, 1], [7, ' 9 '], [11, 0]])
  assert oracle.read_answers(str(p), [3, 7, 11], 10) == {3: 1, 7: 9, 11: 0}


@pytest.mark.parametrize('rows,match', [
    ([[3, 1], [7, 2]], r'no line for id\(s\) \[11\]'),
    ([[3, 1], [7, 2], [11, 10]], 'outside 0..9'),
    ([[3, 1], [7, 2], [11, -1]], 'outside 0..9'),
    ([[3, 1], [7, ''], [11, 1]], 'id 7 has no label'),
    ([[3, 1], [7, 'seven'], [11, 1]],
     r"id 7: 'seven' is not an integer in 0\.\.9"),
    ([[3, 1], [7, 2], [11, 1], [99, 1]], 'id 99 was not queried'),
    ([[3, 1], [3, 2], [7, 2], [11, 1]], 'id 3 is answered twice'),
])
def test_read_answers_refuses_bad_files(tmp_path, rows, match):
  p = tmp_path / 'm.csv'
  filled(p, rows)
  with pytest.raises(oracle.OracleError, match=match) as e:
    oracle.read_answers(str(p), [3, 7, 11], 10)
  assert '\n' not in str(e.value) and 'm.csv' in str(e.value)


def test_answers_by_class_name(tmp_path):
  names = ('circle', 'Square')
  p = tmp_path / 'm.csv'
  filled(p, [[3, 'circle'], [7, 'square'], [11, 1]])
  assert oracle.read_answers(str(p), [3, 7, 11], 2, names) == {
      3: 0, 7: 1, 11: 1}
  filled(p, [[3, 'circle'], [7, 'cat'], [11, 1]])
  with pytest.raises(oracle.OracleError,
                     match=r"id 7: 'cat' is not a class number or name "
                     r'\(0=circle, 1=Square\)'):
    oracle.read_answers(str(p), [3, 7, 11], 2, names)
  lines = []
  answers = oracle.ask_terminal([2], np.zeros((3, 4)), 2, '/q',
                                io.StringIO('dog\nSQUARE\n'), lines.append,
                                names)
  assert answers == {2: 1}
  assert any('0=circle, 1=Square' in l for l in lines)
  message = str(oracle.WaitingForLabels('/w/m.csv', 2, names))
  assert 'classes 0=circle, 1=Square' in message and '\n' not in message


def test_read_answers_bad_header_and_missing(tmp_path):
  p = tmp_path / 'm.csv'
  p.write_text('sample,class\n3,1\n')
  with pytest.raises(oracle.OracleError, match='header'):
    oracle.read_answers(str(p), [3], 10)
  p.write_text('')
  with pytest.raises(oracle.OracleError, match=r'header id,label \(the file '
                     r'is empty\)'):
    oracle.read_answers(str(p), [3], 10)
  p.write_text('id;label\n3;1\n')  # A spreadsheet's semicolons.
  with pytest.raises(oracle.OracleError, match='save it comma-separated'):
    oracle.read_answers(str(p), [3], 10)
  # Part-way: the labelled rows, every id still needing its line.
  p.write_text('id,label\n3,1\n4,\n')
  assert oracle.read_answers(str(p), [3, 4], 10, partial=True) == {3: 1}
  with pytest.raises(oracle.OracleError, match=r'no line for id\(s\) \[5\]'):
    oracle.read_answers(str(p), [3, 4, 5], 10, partial=True)
  with pytest.raises(oracle.OracleError, match='missing'):
    oracle.read_answers(str(tmp_path / 'none.csv'), [3], 10)


def test_terminal_oracle_reads_stdin_and_retries():
  x = np.zeros((5, 28, 28, 1), np.float32)
  x[2, 5:20, 10:14] = 1.0
  lines = []
  answers = oracle.ask_terminal([2, 4], x, 10, '/q', io.StringIO('x\n12\n7\n3\n'),
                                lines.append)
  assert answers == {2: 7, 4: 3}
  assert any('#' in l or '@' in l for l in lines)  # The preview drew the bar.
  assert any('not an integer' in l for l in lines)
  assert any('outside 0..9' in l for l in lines)
  with pytest.raises(oracle.OracleError, match='input ended'):
    oracle.ask_terminal([2], x, 10, '/q', io.StringIO(''), lines.append)


def test_skip_is_an_answer_in_files_and_at_the_terminal(tmp_path):
  assert [oracle.parse_label(t, 3) for t in ('skip', ' SKIP ', '?', '2')] == [
      oracle.SKIPPED] * 3 + [2]
  # A class named 'skip' is that class; '?' still skips.
  names = ('keep', 'skip')
  assert oracle.parse_label('skip', 2, names) == 1
  assert oracle.parse_label('?', 2, names) == oracle.SKIPPED
  with pytest.raises(ValueError, match="is not an integer in 0..2, nor '?'"):
    oracle.parse_label('maybe', 3)
  p = str(tmp_path / 'm.csv')
  filled(p, [[3, 'skip'], [7, 1], [11, '?']])
  answers = oracle.read_answers(p, [3, 7, 11], 3)
  assert answers == {3: oracle.SKIPPED, 7: 1, 11: oracle.SKIPPED}
  oracle.write_manifest(p, [3, 7, 11], answers, ('a', 'b', 'c'))
  with open(p) as f:
    assert f.read().splitlines() == ['id,label', '3,?', '7,b', '11,?']
  # Written back as '?', a skip stays a skip beside a class named 'skip'
  # (a terminal session's answers are read back from the manifest).
  oracle.write_manifest(p, [3, 7], {3: oracle.SKIPPED, 7: 1}, names)
  assert oracle.read_answers(p, [3, 7], 2, names) == {3: oracle.SKIPPED,
                                                      7: 1}
  x = np.zeros((5, 2), np.float32)
  lines = []
  assert oracle.ask_terminal([2, 4], x, 3, '/q', io.StringIO('?\n1\n'),
                             lines.append) == {2: oracle.SKIPPED, 4: 1}
  assert "0..2, or '?' for one you cannot tell" in lines[1], lines
  waiting = str(oracle.WaitingForLabels(p, 3))
  assert "'?' for one you cannot tell" in waiting, waiting
  # Vectors get no pictures: the message does not promise any, and names
  # the labels a run's classes allow.
  waiting = str(oracle.WaitingForLabels(p, 3, num_classes=3))
  assert "(3 samples; their ids are pool rows; 0..2, or '?'" in waiting, (
      waiting)
  (tmp_path / 'contact_sheet.png').write_bytes(b'')
  assert 'their images and a contact sheet are beside it' in str(
      oracle.WaitingForLabels(p, 3))


def test_colour_images_preview_as_text_pictures():
  rgb = np.zeros((16, 16, 3), np.float32)
  rgb[4:12, 4:12] = (1.0, 0.5, 0.0)
  text = oracle.ascii_preview(rgb)
  assert set(text) <= set(' .:-=+*#%@\n') and '\n' in text, text
  assert text.count('\n') < 16


@pytest.mark.parametrize('rows,match', [
    ([[3, 'skip']], 'line 2: a correction is a label'),
    ([[3, 1], [3, 0]], 'line 3: id 3 is corrected twice'),
    ([[50, 1]], r'id 50 is not in the pool \(ids 0..49\)'),
    ([[3, 'dog']], "label of id 3: 'dog' is not a class number or name"),
])
def test_corrections_are_read_as_answers_are(tmp_path, rows, match):
  p = str(tmp_path / 'corrections.csv')
  filled(p, [[3, 'cat'], [7, 0]])
  assert oracle.read_corrections(p, 50, 2, ('cat', 'cow')) == {3: 0, 7: 0}
  filled(p, rows)
  with pytest.raises(oracle.OracleError, match=match):
    oracle.read_corrections(p, 50, 2, ('cat', 'cow'))


def test_class_names_that_are_numbers_are_read_as_names(tmp_path):
  # Folders `1` and `2` are classes 0 and 1: `1` must mean the folder `1`,
  # and a class number, which would read `1` as folder `2`, is refused.
  names = ('1', '2')
  p = tmp_path / 'm.csv'
  filled(p, [[3, '1'], [7, '2'], [11, ' 1 ']])
  assert oracle.read_answers(str(p), [3, 7, 11], 2, names) == {
      3: 0, 7: 1, 11: 0}
  filled(p, [[3, '1'], [7, '0'], [11, '2']])
  with pytest.raises(oracle.OracleError,
                     match=r"id 7: '0' is not one of the class names 1, 2 "
                     r'\(.*never as a class number\)') as e:
    oracle.read_answers(str(p), [3, 7, 11], 2, names)
  assert '\n' not in str(e.value)
  lines = []
  answers = oracle.ask_terminal([2], np.zeros((3, 4)), 2, '/q',
                                io.StringIO('0\n1\n'), lines.append, names)
  assert answers == {2: 0}
  assert any("'0' is not one of the class names 1, 2" in l for l in lines)
  assert any('class names 1, 2' in l and l.endswith(': ') for l in lines)
  message = str(oracle.WaitingForLabels('/w/m.csv', 2, names))
  assert 'class names 1, 2' in message and 'never as a class number' in message
  # Names equal to their own numbers agree with both readings.
  digits = tuple(str(j) for j in range(10))
  assert not oracle.names_only(digits)
  assert oracle.parse_label('7', 10, digits) == 7


def test_read_answers_refuses_a_legacy_encoding(tmp_path):
  p = tmp_path / 'm.csv'
  p.write_bytes('id,label\n3,z\xe9ro\n'.encode('cp1252'))
  with pytest.raises(oracle.OracleError,
                     match=r'm\.csv is not UTF-8 text .*save it as CSV '
                     'UTF-8') as e:
    oracle.read_answers(str(p), [3], 2, ('un', 'z\xe9ro'))
  assert '\n' not in str(e.value)


def test_read_answers_accepts_excel_csv_utf8(tmp_path):
  # Excel's "CSV UTF-8": a byte order mark and CRLF line ends.
  p = tmp_path / 'm.csv'
  p.write_bytes('\ufeffid,label\r\n3,z\xe9ro\r\n7,un\r\n11,0\r\n'.encode())
  assert oracle.read_answers(str(p), [3, 7, 11], 2, ('un', 'z\xe9ro')) == {
      3: 1, 7: 0, 11: 0}
