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


# ---- the bills section ---------------------------------------------------------------------------
from core.mapping import DEFAULT_PURCHASE_ORDER_STATUS, BillMapping, DaysAfterReceive  # noqa: E402


def test_without_a_bills_section_the_defaults_apply_and_invoice_keys_are_unchanged(tmp_path):
    mapping = load_mapping(write(tmp_path, "status: AUTHORISED\naccounts:\n  default: 200\n"))
    assert mapping.bills == BillMapping()
    assert mapping.bills.target == "bill" and mapping.bills.status == "DRAFT"
    assert mapping.bills.due_date == "payment_term" and mapping.bills.purchase_order_number == "{purchaseOrderNumber}"
    assert mapping.bills.purchase_order_status == DEFAULT_PURCHASE_ORDER_STATUS
    assert mapping.status == "AUTHORISED" and mapping.accounts.default == "200"
    assert mapping.model_dump(exclude={"bills"}) == InvoiceMapping(status="AUTHORISED",
                                                                   accounts={"default": "200"}).model_dump(exclude={"bills"})


def test_a_bills_section_beside_the_invoice_keys(tmp_path):
    mapping = load_mapping(write(tmp_path, """\
status: SUBMITTED
bills:
  target: purchase_order
  status: AUTHORISED
  purchase_order_status: {2: SUBMITTED, On Hold: DRAFT}
  purchase_order_number: "AT-{purchaseOrderNumber}"
  due_date: {days_after_receive: 14}
  accounts: {by_product_id: {31001: 720}, by_billing_code_id: {29682804: 300}, default: 300}
  tax: {tax_exempt: NONE, by_region: {New Zealand GST: INPUT2}, by_product_name: {M365-BP: NONE}}
  freight: {account_code: 310, tax_type: INPUT2}
  lines:
    description_rules:
      - {contains: cable, account_code: 300}
"""))
    bills = mapping.bills
    assert mapping.status == "SUBMITTED" and bills.target == "purchase_order" and bills.status == "AUTHORISED"
    # Merged over the defaults, with ids as text.
    assert bills.purchase_order_status == {**DEFAULT_PURCHASE_ORDER_STATUS, "2": "SUBMITTED", "On Hold": "DRAFT"}
    assert bills.due_date == DaysAfterReceive(days_after_receive=14)
    assert bills.accounts.by_product_id == {31001: "720"} and bills.accounts.default == "300"
    assert bills.freight.account_code == "310" and bills.freight.description == "Freight"
    assert bills.lines.description_rules[0].account_code == "300"


@pytest.mark.parametrize("text, key, words", [
    ("bills:\n  target: invoice\n", "'bills.target'", ["'bill'", "'purchase_order'"]),
    ("bills:\n  acounts: {}\n", "'bills.acounts'", ["correct its spelling"]),
    ("bills:\n  freight: {acount_code: 310}\n", "'bills.freight.acount_code'", ["correct its spelling"]),
    ("bills:\n  status: APPROVED\n", "'bills.status'", ["AUTHORISED"]),
    ("bills:\n  purchase_order_status: {Submitted: BILLED}\n", "'bills.purchase_order_status.Submitted'",
     ["'DRAFT'", "'AUTHORISED'"]),
    ("bills:\n  purchase_order_status: {Cancelled: DRAFT}\n", "'bills.purchase_order_status'",
     ["always deleted from Xero", "remove the key"]),
    ("bills:\n  purchase_order_number: 'PO-{number}'\n", "'bills.purchase_order_number'", ["{purchaseOrderNumber}"]),
    ("bills:\n  purchase_order_number: 'PO-{vendorID}'\n", "'bills.purchase_order_number'", ["must contain {id}"]),
    ("bills:\n  due_date: {days_after_invoice: 5}\n", "'bills.due_date'",
     ["not a bill due-date rule", "{days_after_receive: N}"]),
    ("bills:\n  due_date: autotask\n", "'bills.due_date'", ["payment_term, xero_contact"]),
    ("bills:\n  accounts:\n    by_product_id: {Dell Laptop: 300}\n", "'bills.accounts.by_product_id", ["numeric Autotask id"]),
    ("bills:\n  lines:\n    description_rules: [{contains: '', account_code: 300}]\n",
     "'bills.lines.description_rules.0.contains'", ["at least 1 character"]),
    ("bills:\n  lines:\n    description_rules: [{contains: cable}]\n", "'bills.lines.description_rules.0.account_code'",
     ["is missing", "add it"]),
])
def test_bills_section_errors_name_the_key_and_the_fix(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    message = str(error.value)
    assert str(path) in message and key in message and "Fix:" in message, message
    assert all(word in message for word in words), message
    # The invoice due-date wording is not used for the bills' rule.
    if "due_date" in key:
        assert "days_after_invoice: N" not in message


def test_shipped_mapping_files_have_bills_sections():
    demo = load_mapping(MAPPINGS / "demo.yaml").bills
    example = load_mapping(MAPPINGS / "example.yaml").bills
    assert demo.accounts.refuse_unmapped and demo.tax.tax_exempt == "NONE" and demo.freight.account_code == "310"
    assert example.lines.description_rules and example.purchase_order_status == DEFAULT_PURCHASE_ORDER_STATUS


def test_every_mapping_key_is_shown_in_the_example_and_named_in_the_readme():
    import re

    from pydantic import BaseModel

    def paths(model, prefix=""):
        for name, field in model.model_fields.items():
            yield prefix + name
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from paths(field.annotation, f"{prefix}{name}.")

    example = (MAPPINGS / "example.yaml").read_text()
    readme = (MAPPINGS.parent / "README.md").read_text()
    missing = [p for p in paths(InvoiceMapping)
               if not re.search(rf"^\s*#?\s*{re.escape(p.split('.')[-1])}:", example, re.M)]
    assert missing == [], f"keys not shown in mappings/example.yaml: {missing}"
    unnamed = [p for p in paths(InvoiceMapping) if f"`{p.split('.')[-1]}" not in readme and f".{p.split('.')[-1]}`" not in readme
               and f"`{p}" not in readme]
    assert unnamed == [], f"keys the README's mapping reference does not name: {unnamed}"
