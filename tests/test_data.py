"""Dataset parsing, every bad-input path, de-duplication and the split."""
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_messages, write_uci
from core.data import (MIN_PER_CLASS, DataError, check_both_classes, deduplicate, find_data_source, load_messages,
                       read_messages, read_unlabelled, split_messages, split_sizes)


def test_uci_file(sms_file):
    frame, counts = read_messages(sms_file)
    assert list(frame.columns) == ["text", "label"]
    assert counts["format"] == "uci" and counts["rows_read"] == 130
    assert frame.label.tolist().count(1) == 40


def test_csv_with_header_latin1_and_extra_columns(tmp_path):
    # the common Kaggle copy: v1,v2 plus empty columns, latin-1 with a pound sign
    body = "v1,v2,,,\nham,See you at 6,,,\nspam,Win \xa3100 now,,,\nHAM,ok,,,\n1,free tkts,,,\n0,hi there,,,\n"
    path = tmp_path / "spam.csv"
    path.write_bytes(body.encode("latin-1"))
    frame, counts = read_messages(path)
    assert counts["encoding"] == "latin-1" and counts["format"] == "table"
    assert frame.text.tolist() == ["See you at 6", "Win £100 now", "ok", "free tkts", "hi there"]
    assert frame.label.tolist() == [0, 1, 0, 1, 0]


def test_tsv_header_any_column_order_and_names(tmp_path):
    path = tmp_path / "msgs.tsv"
    path.write_text("message\tcategory\nhello\tham\nWIN NOW\tSpam\n", encoding="utf-8")
    frame, _ = read_messages(path)
    assert frame.to_dict("records") == [{"text": "hello", "label": 0}, {"text": "WIN NOW", "label": 1}]


def test_a_tsv_with_a_header_and_more_columns_is_read_by_its_columns(tmp_path):
    # label first, as in the UCI file, but a header naming a third column: not label<TAB>everything else
    path = tmp_path / "msgs.tsv"
    path.write_text("label\ttext\tid\nham\tsee you at 6\t1001\nspam\tWIN a free phone\t1002\n", encoding="utf-8")
    frame, counts = read_messages(path)
    assert counts["format"] == "table"
    assert frame.to_dict("records") == [{"text": "see you at 6", "label": 0}, {"text": "WIN a free phone", "label": 1}]


def test_a_windows_ellipsis_or_a_unicode_line_separator_does_not_cut_a_message(tmp_path):
    # cp1252's "…" is the byte 0x85, NEL when read as latin-1: str.splitlines would end the line there
    path = tmp_path / "d.txt"
    path.write_bytes("ham\tWait\x85 I'll call you back\nspam\tWin \xa3100 now\n".encode("latin-1"))
    frame, counts = read_messages(path)
    assert counts["encoding"] == "latin-1" and counts["rows_read"] == 2 and counts["dropped_unknown_label"] == 0
    assert frame.text.tolist() == ["Wait\x85 I'll call you back", "Win £100 now"]
    assert read_unlabelled("one\u2028message\r\nand\x0canother\rthird".encode(), "m.txt") == (
        ["one\u2028message", "and\x0canother", "third"], 0)


def test_bad_rows_are_dropped_and_counted(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("ham\thello\nspam\t   \nmaybe\twhat\nlabel\ttext\nspam\tbuy now\n", encoding="utf-8")
    frame, counts = read_messages(path)
    assert frame.text.tolist() == ["hello", "buy now"]
    assert counts["dropped_empty_text"] == 1
    assert counts["dropped_unknown_label"] == 2  # "maybe" and a duplicated header line


def test_a_row_with_an_unknown_label_and_no_text_is_counted_once(tmp_path):
    """The summary's dropped counts add up to the rows dropped: a row that is bad two ways is counted as an unknown
    label only, not also as an empty message."""
    path = tmp_path / "d.txt"
    path.write_text("maybe\t  \nham\thi\nspam\twin\n", encoding="utf-8")
    frame, counts = read_messages(path)
    assert frame.text.tolist() == ["hi", "win"] and counts["rows_read"] == 3
    assert (counts["dropped_empty_text"], counts["dropped_unknown_label"]) == (0, 1)


def test_uci_lines_under_a_header_keep_their_quotes_and_rows(tmp_path):
    # a quote opening a raw message must not swallow the lines after it, as a CSV reader would
    body = 'label\ttext\nham\t"Gimme a few" was  &lt;#&gt;  minutes ago\nspam\tWIN "big" now\nham\tok\n'
    path = tmp_path / "with-header.tsv"
    path.write_text(body, encoding="utf-8")
    frame, counts = read_messages(path)
    assert counts["format"] == "uci" and counts["rows_read"] == 3 and counts["dropped_unknown_label"] == 0
    assert frame.text.tolist() == ['"Gimme a few" was  &lt;#&gt;  minutes ago', 'WIN "big" now', "ok"]


def test_a_bad_first_row_does_not_turn_a_uci_file_into_a_table(tmp_path):
    rows = make_messages(20, 10)
    path = tmp_path / "d.txt"
    path.write_text("maybe\tfirst row\n" + "".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
    frame, counts = read_messages(path)
    assert counts["format"] == "uci" and counts["rows_read"] == 31 and counts["dropped_unknown_label"] == 1
    assert len(frame) == 30


def test_csv_quoted_tsv_is_unquoted(tmp_path):
    frame = pd.DataFrame({"label": ["ham", "spam", "ham"], "text": ['"Gimme a few" was late', "WIN\tnow", "ok"]})
    path = tmp_path / "pandas.tsv"
    frame.to_csv(path, sep="\t", index=False)
    parsed, counts = read_messages(path)
    assert counts["format"] == "table"
    assert parsed.text.tolist() == frame.text.tolist()


def test_a_pandas_tsv_with_some_messages_over_two_lines_is_read_as_a_table(tmp_path):
    """A fifth of the messages quoted across two lines leaves fewer than 9 in 10 lines looking like label<TAB>text:
    such a file is a CSV writer's, and read as a table, each message whole, not split into a cut message and a row
    with a bad label."""
    rows = make_messages(12, 8)
    texts = [f"{text}\nsecond line" if i % 5 == 0 else text for i, (_, text) in enumerate(rows)]
    frame = pd.DataFrame({"label": [label for label, _ in rows], "text": texts})
    path = tmp_path / "pandas.tsv"
    frame.to_csv(path, sep="\t", index=False)
    parsed, counts = read_messages(path)
    assert counts["format"] == "table" and counts["rows_read"] == 20 and counts["dropped_unknown_label"] == 0
    assert parsed.text.tolist() == texts and sum("\n" in t for t in texts) == 4


def test_lines_a_csv_reader_cannot_split_are_counted(tmp_path):
    path = tmp_path / "d.csv"
    # with a third column, one field too many (an unquoted comma in a message) cannot be told apart from the
    # next column's: the row is dropped and counted, never cut at the comma
    path.write_text("label,text,source\nspam,WIN a prize, call now,web\nham,hi,me\nspam,win,now,extra,x\n"
                    "spam,free,web\n", encoding="utf-8")
    frame, counts = read_messages(path)
    assert frame.text.tolist() == ["hi", "free"]
    assert counts["dropped_unparseable"] == 2 and counts["rows_read"] == 4


@pytest.mark.parametrize("header, row", [("label,text", "{label},{text}"), ("text,label", "{text},{label}"),
                                         ("label;message", "{label};{text}")])
def test_a_label_and_a_message_keep_the_messages_unquoted_separators(tmp_path, header, row):
    # a hand-written two-column file: a label holds no separator, so the extra fields are the message's own
    sep = ";" if ";" in header else ","
    messages = [("ham", f"Running 10 mins late{sep} save me a seat"), ("spam", f"WIN{sep} a prize{sep} call now"),
                ("ham", "see you at 6"), ("spam", "Free entry, txt WIN to 80086")]
    path = tmp_path / "mine.csv"
    path.write_text("\n".join([header] + [row.format(label=l, text=t) for l, t in messages]) + "\n", encoding="utf-8")
    frame, counts = read_messages(path)
    assert frame.text.tolist() == [t for _, t in messages] and frame.label.tolist() == [0, 1, 0, 1]
    assert counts["dropped_unparseable"] == 0 and counts["rows_read"] == 4


def test_duplicated_header_line_in_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("label,text\nham,hi\nlabel,text\nspam,win\n", encoding="utf-8")
    frame, counts = read_messages(path)
    assert frame.label.tolist() == [0, 1] and counts["dropped_unknown_label"] == 1


@pytest.mark.parametrize("bom, codec", [(b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_excel_unicode_text_utf16_is_read(tmp_path, bom, codec):
    # Excel's "Unicode Text" is a tab-separated UTF-16 file with a byte-order mark
    body = "label\ttext\r\nham\tsee you at 6 \u263a\r\nspam\tWIN \u00a3500 now, reply YES\r\n"
    path = tmp_path / "excel.txt"
    path.write_bytes(bom + body.encode(codec))
    frame, counts = read_messages(path)
    assert counts["encoding"] == "utf-16" and frame.text.tolist() == ["see you at 6 \u263a", "WIN \u00a3500 now, reply YES"]
    assert frame.label.tolist() == [0, 1]


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (b"just one column\nanother line\n", "label column|column"),
    (b"a,b\nfoo,bar\nbaz,qux\n", "no label column"),
    (b"label,text\nmaybe,hi\nunknown,there\n", "the label column 'label' holds 'maybe', 'unknown'; expected ham/spam"),
])
def test_unusable_files_raise_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_messages(path)


def test_bytes_upload_is_parsed_like_a_file():
    frame, _ = read_messages(b"ham\thi\nspam\twin\n", name="upload.txt")
    assert frame.label.tolist() == [0, 1]


def test_one_class_and_too_few_per_class(tmp_path):
    one = write_uci(tmp_path / "one.txt", [("ham", f"hello {i}") for i in range(50)])
    with pytest.raises(DataError, match="only one class"):
        load_messages(one)
    few = write_uci(tmp_path / "few.txt", [("ham", f"hello {i}") for i in range(50)] +
                    [("spam", f"win {i}") for i in range(MIN_PER_CLASS - 1)])
    with pytest.raises(DataError, match=f"expected at least {MIN_PER_CLASS}"):
        load_messages(few)


def test_deduplicate_normalises_whitespace_and_counts_conflicts():
    frame = pd.DataFrame({"text": ["win  now", "win now ", "hi", "hi", "x"], "label": [1, 1, 0, 1, 0]})
    out, info = deduplicate(frame)
    assert out.text.tolist() == ["win now", "hi", "x"]
    assert info == {"duplicates_removed": 2, "label_conflicts": 1}


def test_deduplicate_keeps_the_first_copy_and_its_label():
    """Of a message repeated with two labels, the first copy is kept, with its label, as the summary says: the
    split (and so every run's results) depends on which one stays."""
    out, _ = deduplicate(pd.DataFrame({"text": ["hi", "hi", "x"], "label": [0, 1, 0]}))
    assert out.to_dict("list") == {"text": ["hi", "x"], "label": [0, 0]}


def test_split_has_no_overlap_is_stratified_and_deterministic(tmp_path):
    rows = make_messages(n_ham=400, n_spam=100)
    rows += rows[:60]  # exact repeats must not leak across splits
    messages = load_messages(write_uci(tmp_path / "d.txt", rows))
    assert messages.summary["duplicates_removed"] == 60
    splits = split_messages(messages.frame, 0.1, 0.2, seed=7)
    sets = {name: set(part.text) for name, part in splits.items()}
    assert not (sets["train"] & sets["test"]) and not (sets["train"] & sets["validation"])
    assert not (sets["validation"] & sets["test"])
    assert sum(len(s) for s in sets.values()) == 500
    # 20 % spam in every part, exactly as both stratified cuts give it (test, then validation from the rest), for
    # every seed: an unstratified cut hits the exact count by chance for one seed (validation at seed 7), not for five
    for seed in range(7, 12):
        counts = {name: (len(part), int(part.label.sum()))
                  for name, part in split_messages(messages.frame, 0.1, 0.2, seed=seed).items()}
        assert counts == {"train": (350, 70), "validation": (50, 10), "test": (100, 20)}, seed
    assert len(splits["test"]) == 100 and len(splits["validation"]) == 50
    again = split_messages(messages.frame, 0.1, 0.2, seed=7)
    assert all(again[k].equals(splits[k]) for k in splits)
    other = split_messages(messages.frame, 0.1, 0.2, seed=8)
    assert not other["test"].equals(splits["test"])


def test_fewer_training_messages_are_a_nested_stratified_sample_and_leave_the_rest_alone(tmp_path):
    messages = load_messages(write_uci(tmp_path / "d.txt", make_messages(n_ham=400, n_spam=100)))
    full = split_messages(messages.frame, 0.1, 0.2, seed=7)
    parts = {n: split_messages(messages.frame, 0.1, 0.2, seed=7, train_messages=n) for n in (20, 60, 200)}
    for n, part in parts.items():
        assert len(part["train"]) == n
        assert part["train"]["label"].sum() == round(n * full["train"]["label"].mean())  # the training part's share
        assert part["validation"].equals(full["validation"]) and part["test"].equals(full["test"])
        assert set(part["train"].text) <= set(full["train"].text)
        # in the training part's order: the sampler's batch order works on it as on the whole part
        positions = [full["train"].text.tolist().index(t) for t in part["train"].text]
        assert positions == sorted(positions)
    assert set(parts[20]["train"].text) <= set(parts[60]["train"].text) <= set(parts[200]["train"].text)  # nested
    assert split_messages(messages.frame, 0.1, 0.2, seed=7, train_messages=200)["train"].equals(parts[200]["train"])
    assert not split_messages(messages.frame, 0.1, 0.2, seed=8, train_messages=200)["train"].text.isin(
        parts[200]["train"].text).all()
    # as many as there are, or more: the whole training part
    assert split_messages(messages.frame, 0.1, 0.2, seed=7, train_messages=10_000)["train"].equals(full["train"])
    from core.config import TrainConfig
    with pytest.raises(ValueError, match=r"train_messages: expected a value in \[20, "):
        TrainConfig(train_messages=5)

def test_source_order_explicit_then_env_then_data_dir(tmp_path, monkeypatch, sms_file):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPAM_DATA", raising=False)
    with pytest.raises(DataError, match="data file not found"):
        find_data_source(tmp_path / "missing.txt")
    monkeypatch.setenv("SPAM_DATA", str(sms_file))
    assert find_data_source() == str(sms_file)
    (tmp_path / "data").mkdir()
    local = write_uci(tmp_path / "data" / "SMSSpamCollection", make_messages(seed=1))
    monkeypatch.delenv("SPAM_DATA")
    assert Path(find_data_source()).resolve() == local.resolve()
    # set but wrong is reported, not quietly replaced by data/
    monkeypatch.setenv("SPAM_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="data file not found: SPAM_DATA="):
        find_data_source()
    with pytest.raises(DataError, match="is a folder"):
        find_data_source(tmp_path / "data")


def test_offline_without_any_data_names_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPAM_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        find_data_source()
    message = str(err.value)
    for place in ("$SPAM_DATA", "data/SMSSpamCollection", "ucirvine/sms_spam", "--data"):
        assert place in message


def test_real_data_summary(real_data):
    messages = load_messages(real_data)
    s = messages.summary
    assert s["rows_read"] == 5574
    assert s["duplicates_removed"] >= 400  # ~400 exact repeats, a few more after whitespace normalisation
    assert s["ham"] + s["spam"] == s["rows"] == len(messages.frame)
    assert 0.11 < s["spam"] / s["rows"] < 0.14


@pytest.mark.parametrize("raw, name, expected", [
    (b"Hi, how are you\nWIN a prize, call now\n\n", "mine.txt", ["Hi, how are you", "WIN a prize, call now"]),
    (b'id,text\n1,"hello, there"\n2,WIN now\n', "a.csv", ["hello, there", "WIN now"]),
    (b"id\tmessage\n1\thello, you\n2\tWIN\n", "a.tsv", ["hello, you", "WIN"]),
    (b"text\nhello\nWIN\n", "a.csv", ["hello", "WIN"]),  # a header naming the one column
    (b"hello\nWIN\n", "a.csv", ["hello", "WIN"]),  # one column, no header: every line a message
    (b"n,note\n1,short\n2,a much longer column of text\n", "a.csv", ["short", "a much longer column of text"]),
    # one column as pandas writes it: quotes undone, a message quoted across two lines stays one message
    (b'text\n"WIN a prize, call now"\n"He said ""hi"""\n"line1\nline2"\nok\n', "a.csv",
     ["WIN a prize, call now", 'He said "hi"', "line1\nline2", "ok"]),
])
def test_unlabelled_files_give_their_messages(raw, name, expected):
    assert read_unlabelled(raw, name) == (expected, 0)


def test_an_unlabelled_row_with_an_unquoted_separator_is_left_out_and_counted_not_cut():
    assert read_unlabelled(b"id,text\n1,WIN a prize, call now\n2,ok\n", "a.csv") == (["ok"], 1)


@pytest.mark.parametrize("raw, message", [(b"  \n", "the file is empty"), (b"\xef\xbb\xbf", "the file is empty"),
                                          ("\u00a0\n".encode(), "the file is empty"), (b"\x00\x01PK", "binary file")])
def test_unlabelled_files_that_hold_no_messages_are_refused(raw, message):
    with pytest.raises(DataError, match=message):
        read_unlabelled(raw, "x.csv")


@pytest.mark.parametrize("n_ham, val, test, part", [(300, 0.01, 0.01, "validation"), (300, 0.1, 0.01, "test"),
                                                     (90, 0.1, 0.01, "test")])
def test_a_split_that_would_leave_a_part_without_spam_is_refused(n_ham, val, test, part):
    # 10 spam pass load_messages' check, but a 1 % part of 310 messages holds 4, drawn from 97 % ham; 1 % of 100 is
    # one message, too few for scikit-learn to stratify
    frame = pd.DataFrame({"text": [f"m{i}" for i in range(n_ham + 10)], "label": [0] * n_ham + [1] * 10})
    with pytest.raises(DataError, match=rf"the {part} part \(\d+ of {n_ham + 10} messages, 10 of them spam.* lack a"):
        check_both_classes(split_messages(frame, val, test, seed=0), frame, val, test)
    if n_ham == 300:  # an older run trained on such a split: rebuilding it (finish, resume, evaluate) is not refused
        assert split_messages(frame, val, test, seed=0)[part]["label"].sum() == 0


@pytest.mark.parametrize("n, val, test", [(5160, 0.1, 0.2), (130, 0.1, 0.2), (1001, 0.15, 0.15), (77, 0.2, 0.3)])
def test_split_sizes_are_those_of_the_split_itself(n, val, test):
    frame = pd.DataFrame({"text": [f"m{i}" for i in range(n)], "label": [int(i % 7 == 0) for i in range(n)]})
    parts = split_messages(frame, val, test, seed=3)
    assert split_sizes(n, val, test) == {name: len(part) for name, part in parts.items()}


@pytest.mark.parametrize("endpoint,address", [("https://huggingface.co", ("huggingface.co", 443)),
                                              ("http://mirror.local", ("mirror.local", 80)),
                                              ("http://mirror.local:8080", ("mirror.local", 8080))])
def test_the_hub_check_connects_to_the_endpoints_own_port(monkeypatch, endpoint, address):
    # a mirror at http://host (port 80) was tried on 443, found unreachable, and the app went offline
    import contextlib
    import socket

    import core.hub
    tried = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(socket, "create_connection",
                        lambda addr, timeout: tried.append(addr) or contextlib.nullcontext())
    monkeypatch.setattr(core.hub, "_last_answer", None)
    assert core.hub.hub_reachable() and tried == [address]


def test_the_hub_check_is_made_again_after_a_while(monkeypatch):
    """The app runs for hours: a network that comes back (or goes) must be seen, not the first answer kept."""
    import contextlib
    import socket
    import time

    import core.hub
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(core.hub, "_last_answer", None)
    tries = []

    def unreachable(address, timeout):
        tries.append(address)
        raise OSError("no route to host")
    monkeypatch.setattr(socket, "create_connection", unreachable)
    assert not core.hub.hub_reachable() and not core.hub.hub_reachable() and len(tries) == 1  # asked once
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: tries.append(address) or
                        contextlib.nullcontext())
    monkeypatch.setattr(core.hub, "_last_answer", (time.monotonic() - core.hub.RECHECK_S + 5, False))  # not yet due
    assert not core.hub.hub_reachable() and len(tries) == 1
    monkeypatch.setattr(core.hub, "_last_answer", (time.monotonic() - core.hub.RECHECK_S - 1, False))
    assert core.hub.hub_reachable() and len(tries) == 2  # the network came back
