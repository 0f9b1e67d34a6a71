from pathlib import Path

import pytest

from core.mapping import InvoiceMapping, MappingError, load_mapping

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "tenant.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_mapping_files_load():
    demo = load_mapping(MAPPINGS / "demo.yaml")
    example = load_mapping(MAPPINGS / "example.yaml")
    assert demo.accounts.refuse_unmapped is True
    assert demo.tax.tax_exempt == "EXEMPTOUTPUT"
    assert example.invoice_number == "autotask"


def test_empty_file_gives_the_defaults(tmp_path):
    mapping = load_mapping(write(tmp_path, ""))
    assert mapping == InvoiceMapping()
    assert mapping.status == "DRAFT"
    assert mapping.line_amount_types == "Exclusive"
    assert mapping.due_date == "autotask"
    assert mapping.reference == "PO {orderNumber}"


def test_account_codes_written_as_numbers_become_text(tmp_path):
    mapping = load_mapping(write(tmp_path, "accounts:\n  default: 200\n  by_billing_code_id:\n    29682801: 260\n"))
    assert mapping.accounts.default == "200"
    assert mapping.accounts.by_billing_code_id == {29682801: "260"}


def test_misspelt_key_names_file_key_and_fix(tmp_path):
    path = write(tmp_path, "accounts:\n  refuse_unmaped: true\n")
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    message = str(error.value)
    assert str(path) in message
    assert "accounts.refuse_unmaped" in message
    assert "correct its spelling" in message


def test_bad_status_lists_the_allowed_values(tmp_path):
    with pytest.raises(MappingError) as error:
        load_mapping(write(tmp_path, "status: APPROVED\n"))
    message = str(error.value)
    assert "'status'" in message and "APPROVED" in message and "AUTHORISED" in message


def test_billing_code_id_must_be_a_number(tmp_path):
    with pytest.raises(MappingError) as error:
        load_mapping(write(tmp_path, "accounts:\n  by_billing_code_id:\n    Remote Support: '200'\n"))
    assert "accounts.by_billing_code_id" in str(error.value)
    assert "numeric Autotask id" in str(error.value)


def test_invoice_number_template_must_be_unique_per_invoice(tmp_path):
    with pytest.raises(MappingError) as error:
        load_mapping(write(tmp_path, "invoice_number: 'INV-{orderNumber}'\n"))
    assert "{id}" in str(error.value) and "INV:{id}" in str(error.value)


def test_unknown_template_placeholder_is_named(tmp_path):
    with pytest.raises(MappingError) as error:
        load_mapping(write(tmp_path, "reference: 'PO {purchaseOrder}'\n"))
    assert "'reference'" in str(error.value) and "{purchaseOrder}" in str(error.value)


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(MappingError) as error:
        load_mapping(write(tmp_path, "accounts:\n  default: '200\n"))
    assert "not valid YAML" in str(error.value) and "line" in str(error.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(MappingError) as error:
        load_mapping(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(error.value) and "check the path" in str(error.value)


def test_a_list_is_not_a_mapping_file(tmp_path):
    with pytest.raises(MappingError) as error:
        load_mapping(write(tmp_path, "- accounts\n"))
    assert "tenant.yaml" in str(error.value)


def test_bad_due_date_rule_gets_one_message_naming_every_shape(tmp_path):
    with pytest.raises(MappingError) as error:
        load_mapping(write(tmp_path, "due_date_overrides:\n  174: {day_of_following_month: 40}\n"))
    message = str(error.value)
    assert message.count("is not a due-date rule") == 1 and "'due_date_overrides.174'" in message
    assert "{days_after_invoice: N}" in message


def test_rounding_line_without_account_names_the_key(tmp_path):
    with pytest.raises(MappingError) as error:
        load_mapping(write(tmp_path, "tax:\n  rounding: {strategy: rounding_line}\n"))
    assert "'tax.rounding'" in str(error.value) and "account_code" in str(error.value)


def test_new_keys_load(tmp_path):
    mapping = load_mapping(write(tmp_path, (
        "currency_rate: autotask\nstatus_overrides: {174: AUTHORISED}\n"
        "due_date: {days_after_invoice: 14}\nlines: {group_by: billing_code}\n"
        "branding_themes: {by_template_id: {101: Standard}}\n"
        "tracking:\n  - {category: Region, source: 'company.udf:Region', options: {1: North}}\n")))
    assert mapping.status_overrides == {"174": "AUTHORISED"}
    assert mapping.due_date.days_after_invoice == 14
    assert mapping.tracking[0].options == {"1": "North"}
