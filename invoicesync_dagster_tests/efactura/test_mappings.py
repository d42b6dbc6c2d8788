"""The mappings CSV: good lines load, every bad line is named with its file, line and fix."""

from __future__ import annotations

from invoicesync_dagster.efactura.mappings import parse_mappings

FILE = "customers.csv"


def parse(text: str | bytes) -> tuple[dict[str, tuple[str, str]], list[str]]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    result = parse_mappings(data, FILE)
    entries = {email: (m.tax_id, m.kind) for email, m in result.entries.items()}
    return entries, [str(p) for p in result.problems]


def test_a_clean_file_loads_every_line_normalised() -> None:
    entries, problems = parse(
        "email,cui\n"
        "Office@Popescu.RO , RO 4221306\n"
        "contabil@firma.ro,0012345674\n"
        "\n"
        "# a comment\n"
        "ion@gmail.com,1800101123450\n"
        "anon@gmail.com,0000000000000\n"
    )
    assert problems == []
    assert entries == {
        "office@popescu.ro": ("4221306", "cui"),
        "contabil@firma.ro": ("12345674", "cui"),
        "ion@gmail.com": ("1800101123450", "cnp"),
        "anon@gmail.com": ("0000000000000", "cnp"),
    }


def test_excel_semicolons_bom_crlf_other_columns_and_column_order() -> None:
    data = "\ufeffNume;CIF;Email\r\nPopescu SRL;RO4221306;office@popescu.ro\r\n".encode()
    entries, problems = parse(data)
    assert problems == []
    assert entries == {"office@popescu.ro": ("4221306", "cui")}


def test_a_bad_header_is_named_and_the_columns_are_read_as_email_cui() -> None:
    entries, problems = parse("mail,cod\na@firma.ro,RO4221306\n")
    assert entries == {"a@firma.ro": ("4221306", "cui")}
    assert len(problems) == 1
    assert problems[0].startswith("customers.csv, line 1: the first line must name the columns")
    assert "`email,cui`" in problems[0] and "'mail,cod'" in problems[0]


def test_a_missing_header_keeps_the_first_line_as_data() -> None:
    entries, problems = parse("a@firma.ro,RO4221306\nb@firma.ro,RO12345674\n")
    assert set(entries) == {"a@firma.ro", "b@firma.ro"}
    assert len(problems) == 1 and "line 1" in problems[0]


def test_bad_lines_are_reported_and_good_lines_still_load() -> None:
    entries, problems = parse(
        "email,cui\n"
        "good@firma.ro,RO4221306\n"  # 2
        "empty@firma.ro,\n"  # 3
        "digit@firma.ro,RO12345678\n"  # 4: check digit should be 4
        "not-an-email,RO4221306\n"  # 5
        "twice@firma.ro,RO12345674\n"  # 6
        "also-good@firma.ro,8486152\n"  # 7
        "twice@firma.ro,RO4221306\n"  # 8
        "cnp@gmail.com,1800101123456\n"  # 9: CNP check digit should be 0
        "same@firma.ro,RO4221306\n"  # 10
        "same@firma.ro,4221306\n"  # 11: the same CUI again is fine
    )
    assert entries == {
        "good@firma.ro": ("4221306", "cui"),
        "also-good@firma.ro": ("8486152", "cui"),
        "same@firma.ro": ("4221306", "cui"),
    }
    assert problems[0] == (
        "customers.csv, line 3: empty@firma.ro has an empty CUI: fill in the company's CUI "
        "(e.g. RO12345674) or delete the line"
    )
    assert problems[1].startswith("customers.csv, line 4: digit@firma.ro: CUI 'RO12345678' fails")
    assert "expected 4" in problems[1] and "correct it on this line" in problems[1]
    assert problems[2].startswith("customers.csv, line 5: 'not-an-email' is not an e-mail")
    assert problems[3] == (
        "customers.csv, line 8: twice@firma.ro is given different tax ids on lines 6, 8, so "
        "none is used: keep the right line and delete the others"
    )
    assert problems[4].startswith("customers.csv, line 9: cnp@gmail.com: CNP")
    assert "check digit" in problems[4]
    assert len(problems) == 5


def test_a_line_that_is_not_utf8_is_skipped_and_named() -> None:
    data = (
        b"email,cui\n"
        b"good@firma.ro,RO4221306\n"
        b"gr\xe3dina@firma.ro,RO12345674\n"  # Windows-1250 'ă'
        b"other@firma.ro,8486152\n"
    )
    entries, problems = parse(data)
    assert set(entries) == {"good@firma.ro", "other@firma.ro"}
    assert problems == [
        "customers.csv, line 3: this line is not UTF-8 text (byte 0xE3 at column 3): save the "
        "file as UTF-8 (Excel: Save As → 'CSV UTF-8 (Comma delimited)'); the line was skipped"
    ]


def test_an_empty_file_has_no_mappings_and_no_problems() -> None:
    assert parse("") == ({}, [])
    assert parse("email,cui\n") == ({}, [])
