"""Spec loading: every problem reported at once with file, field and reason; raw identifiers never pass."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
import yaml

from datasets.generalize import AgeBand, Region
from datasets.spec import DEFAULT_AGGREGATES, DatasetSpec, SpecError, load_spec, load_specs, parse_spec


def problems_of(data, **kwargs) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_spec(data, file="spec.yaml", **kwargs)
    assert all(problem.file == "spec.yaml" for problem in caught.value.problems)
    return [(problem.field, problem.reason) for problem in caught.value.problems]


def has(problems: list[tuple[str, str]], field: str, reason_part: str) -> bool:
    return any(f == field and reason_part in r for f, r in problems)


def column(data: dict, name: str) -> dict:
    return next(c for c in data["columns"] if c["name"] == name)


def test_a_valid_spec_loads_with_defaults(spec_data):
    spec = parse_spec(spec_data)
    assert spec.slug == "card_test" and spec.tier == "aggregate"
    assert [c.name for c in spec.published_columns] == ["buyer", "age_band", "gender", "province", "month", "amount"]
    assert spec.column("name").published is False
    assert spec.column("buyer").pseudonymized and spec.column("buyer").type == "string"
    assert isinstance(spec.column("age_band").generalize, AgeBand)
    assert spec.column("age_band").generalize.reference_date == dt.date(2025, 1, 1)
    assert isinstance(spec.column("province").generalize, Region)
    assert spec.time_zone == "Asia/Shanghai" and spec.versions_kept == 3
    assert spec.analysis.aggregates == ("count", "count_distinct", "sum")
    assert spec.analysis.dimensions == ("age_band", "gender", "province", "month")  # default: dimension/quasi/public
    assert spec.analysis.measures == ("amount",)
    assert spec.analysis.min_entities == spec.privacy.k == 3
    assert len(spec.fingerprint) == 64


def test_analysis_defaults_are_the_documented_ones(spec_data):
    del spec_data["analysis"]
    spec = parse_spec(spec_data)
    assert spec.analysis.aggregates == DEFAULT_AGGREGATES == ("count", "count_distinct", "sum", "avg")
    assert spec.analysis.join_keys == ()


def test_every_problem_is_reported_at_once_with_its_field(spec_data):
    spec_data["tier"] = "secret"
    spec_data["schedule"] = "every day at noon"
    spec_data["privacy"]["k"] = 1
    spec_data["privacy"]["quasi_identifiers"].append("postcode")
    spec_data["retention"] = {"versions_kept": 0}
    spec_data["colour"] = "blue"
    column(spec_data, "gender")["role"] = "vip"
    del column(spec_data, "province")["generalize"]
    del spec_data["title"]

    problems = problems_of(spec_data)

    assert has(problems, "tier", "must be one of open, aggregate, lookup")
    assert has(problems, "schedule", "not a valid cron expression")
    assert has(problems, "privacy.k", "integer >= 2")
    assert has(problems, "privacy.quasi_identifiers", "'postcode' is not a declared column")
    assert has(problems, "retention.versions_kept", "integer >= 1")
    assert has(problems, "colour", "unknown field")
    assert has(problems, "columns[gender].role", "must be one of identifier, quasi")
    assert has(problems, "columns[province].generalize", "needs a generalization rule")
    assert has(problems, "title", "is required")
    assert len(problems) >= 9


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda d: d["columns"].append({"name": "id_number", "type": "string", "role": "public", "description": "ID."}), "columns[id_number]", "raw identifier 'id_number'"),
        (lambda d: d["columns"].append({"name": "contact", "from": "phone", "type": "string", "role": "dimension", "description": "x"}), "columns[contact]", "raw identifier 'phone'"),
        (lambda d: d["columns"].append({"name": "name", "type": "string", "role": "sensitive", "description": "x"}), "columns[name]", "duplicate column name"),
        (lambda d: column(d, "name").pop("action"), "columns[name].action", "must say action: drop or pseudonymize"),
        (lambda d: column(d, "buyer").update(action="drop"), "columns[buyer].action", "must be pseudonymized"),
        (lambda d: column(d, "buyer").pop("action"), "columns[buyer].action", "must be pseudonymized"),
        (lambda d: column(d, "buyer").update(generalize={"rule": "keep"}), "columns[buyer].generalize", "never generalized"),
    ],
    ids=["public-id-number", "phone-renamed", "name-twice", "identifier-without-action", "entity-dropped", "entity-without-action", "entity-generalized"],
)  # fmt: skip
def test_a_spec_that_would_publish_a_raw_identifier_is_rejected(spec_data, change, field, reason):
    change(spec_data)
    assert has(problems_of(spec_data), field, reason)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda d: column(d, "gender").update(generalize={"rule": "shuffle"}), "columns[gender].generalize.rule", "unknown rule 'shuffle'"),
        (lambda d: column(d, "amount").update(generalize={"rule": "bucket", "edges": [10, 5]}), "columns[amount].generalize.edges", "strictly increasing"),
        (lambda d: column(d, "amount").update(generalize={"rule": "bucket"}), "columns[amount].generalize.edges", "exactly one of edges, width"),
        (lambda d: column(d, "amount").update(generalize={"rule": "round", "step": 10, "steps": 3}), "columns[amount].generalize.steps", "unknown parameter"),
        (lambda d: column(d, "month").update(generalize={"rule": "truncate", "unit": "decade"}), "columns[month].generalize.unit", "must be one of year"),
        (lambda d: column(d, "age_band").update(generalize={"rule": "age_band", "reference_date": "soon"}), "columns[age_band].generalize.reference_date", "must be a date"),
        (lambda d: column(d, "amount").update(generalize={"rule": "top_bottom", "bottom": 9, "top": 1}), "columns[amount].generalize.top", "greater than bottom"),
        (lambda d: column(d, "amount").update(type="string"), "columns[amount].type", "rule round produces"),
        (lambda d: column(d, "month").pop("type"), "columns[month].type", "is required"),
    ],
    ids=["unknown-rule", "edges-unsorted", "bucket-without-parameters", "unknown-parameter", "bad-unit", "bad-date", "top-below-bottom", "type-vs-rule", "type-missing"],
)  # fmt: skip
def test_generalization_rules_are_validated(spec_data, change, field, reason):
    change(spec_data)
    assert has(problems_of(spec_data), field, reason)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda d: d["privacy"].update(quasi_identifiers=["age_band", "gender"]), "privacy.quasi_identifiers", "'province' is missing"),
        (lambda d: d["privacy"].update(quasi_identifiers=["age_band", "gender", "province", "amount"]), "privacy.quasi_identifiers", "has role measure"),
        (lambda d: d["privacy"].update(entity="amount"), "privacy.entity", "not a column with role entity"),
        (lambda d: d.pop("privacy"), "privacy", "required for aggregate"),
        (lambda d: d.update(sort_by=["name"]), "sort_by", "'name' is not a published column"),
        (lambda d: d.update(sort_by=["month", "province", "month"]), "sort_by", "lists a name more than once"),
        (lambda d: d.update(row_group_rows=5000), "row_group_rows", "multiple of 2048"),
        (lambda d: d.update(row_group_rows=1024), "row_group_rows", "integer >= 2048"),
        (lambda d: d.update(partitioning=["amount"]), "partitioning", "has role measure"),
        (lambda d: d.update(tier="open", analysis=None), "columns[buyer].role", "open datasets publish no person-level columns"),
        (lambda d: d.update(lookup={"key": "buyer"}), "lookup", "only lookup datasets"),
        (lambda d: d["analysis"].update(aggregates=["median"]), "analysis.aggregates", "unknown aggregate 'median'"),
        (lambda d: d["analysis"].update(dimensions=["buyer"]), "analysis.dimensions", "has role entity"),
        (lambda d: d["analysis"].update(min_entities=2), "analysis.min_entities", "integer >= 3"),
        (lambda d: d.update(transform="DELETE FROM source"), "transform", "exactly one SELECT"),
        (lambda d: d.update(transform="SELECT * FROM source; SELECT 1"), "transform", "exactly one SELECT"),
        (lambda d: d.update(transform="SELEC oops"), "transform", "does not parse"),
        (lambda d: d.update(slug="Card-Test"), "slug", "lower-case letters"),
        (lambda d: d.update(time_zone="Mars/Olympus"), "time_zone", "unknown time zone"),
        (lambda d: d.update(update_frequency="sometimes"), "update_frequency", "must be one of hourly"),
    ],
    ids=["quasi-missing-from-list", "quasi-list-names-measure", "entity-not-entity", "privacy-missing", "sort-by-dropped", "sort-by-twice", "row-groups-not-vectors", "row-groups-too-small", "partition-by-measure", "open-with-entity", "lookup-on-aggregate", "unknown-aggregate", "entity-as-dimension", "threshold-below-k", "transform-not-select", "transform-two-statements", "transform-syntax", "slug", "time-zone", "frequency"],
)  # fmt: skip
def test_structural_rules_are_enforced(spec_data, change, field, reason):
    change(spec_data)
    assert has(problems_of(spec_data), field, reason)


def test_lookup_keys_thresholds_and_cohorts_are_checked(lookup_spec_data):
    spec = parse_spec(lookup_spec_data)
    assert spec.lookup.keys == ("buyer",) and spec.lookup.primary_key == "buyer"
    assert spec.lookup.thresholds == ("amount",) and "buyer" not in spec.lookup.fields
    assert spec.row_group_rows == 2048, "lookup datasets default to small row groups"

    bad = copy.deepcopy(lookup_spec_data)
    bad["lookup"] = {
        "keys": ["gender", "buyer", "buyer"],
        "fields": ["buyer", "amount", "province"],
        "thresholds": ["province"],
        "consent_scope": "Credit Assessment",
        "cohort": {"dimensions": ["amount"], "measures": ["province"]},
    }
    bad["sort_by"] = ["amount"]
    problems = problems_of(bad)
    assert has(problems, "lookup.keys", "'gender' is not a pseudonymized column with an identifier kind")
    assert has(problems, "lookup.keys", "one key per identifier kind")
    assert has(problems, "lookup.fields", "'buyer' is a pseudonym: lookups never return one")
    assert has(problems, "lookup.thresholds", "'province' is not numeric")
    assert has(problems, "lookup.consent_scope", "must be a lower-case name")
    assert has(problems, "lookup.cohort.dimensions", "'amount' has role measure")
    assert has(problems, "lookup.cohort.measures", "'province' has role quasi")
    assert has(problems, "sort_by", "sorted by its primary key first")


def test_an_identifier_kind_needs_a_pseudonymized_identifier(spec_data):
    for column in spec_data["columns"]:
        if column["name"] == "amount":
            column["identifier"] = "mobile"
    assert has(problems_of(spec_data), "columns[amount].identifier", "only identifier and entity columns")


def test_a_version_document_of_the_first_lookup_format_still_reads(lookup_spec_data):
    document = parse_spec(lookup_spec_data).to_document()
    document["lookup"] = {"key": "buyer", "threshold": "amount"}
    old = DatasetSpec.from_document(document)
    assert old.lookup.keys == (), "not matchable: the lookup API refuses the version"


def test_placeholders_in_source_options_come_from_variables(spec_data):
    spec_data["source"]["options"] = {
        "rows": "${VITAMIN_DEMO_TRANSACTIONS}",
        "consumers": "${VITAMIN_DEMO_CONSUMERS:-5000}",
        "label": "run-${VITAMIN_DEMO_TRANSACTIONS}-rows",
        "nested": {"tables": ["${TABLE:-transactions}"]},
    }
    spec = parse_spec(spec_data, variables={"VITAMIN_DEMO_TRANSACTIONS": 20000})
    assert spec.source.options == {
        "rows": 20000,  # a whole-value placeholder keeps the variable's type
        "consumers": 5000,  # defaults are read as YAML scalars
        "label": "run-20000-rows",
        "nested": {"tables": ["transactions"]},
    }
    other = parse_spec(spec_data, variables={"VITAMIN_DEMO_TRANSACTIONS": 30000})
    assert other.fingerprint != spec.fingerprint


def test_a_missing_variable_without_default_is_a_problem(spec_data):
    spec_data["source"]["options"] = {"rows": "${VITAMIN_DEMO_TRANSACTIONS}"}
    assert has(problems_of(spec_data), "source.options.rows", "variable VITAMIN_DEMO_TRANSACTIONS is not set")


def test_placeholders_outside_source_options_are_left_alone(spec_data):
    spec_data["description"] = "Costs ${PRICE}."
    assert parse_spec(spec_data).description == "Costs ${PRICE}."


def test_load_specs_reports_problems_across_files(tmp_path, spec_data):
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(spec_data, allow_unicode=True))
    twin = dict(spec_data)
    (tmp_path / "twin.yml").write_text(yaml.safe_dump(twin, allow_unicode=True))
    bad = dict(spec_data, slug="bad_one", tier="nope")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad, allow_unicode=True))
    (tmp_path / "broken.yaml").write_text("slug: [unclosed\n")
    (tmp_path / "notes.txt").write_text("not a spec")

    with pytest.raises(SpecError) as caught:
        load_specs(tmp_path)
    by_file = {(p.file.rsplit("/", 1)[-1], p.field) for p in caught.value.problems}
    assert ("bad.yaml", "tier") in by_file
    assert ("broken.yaml", "") in by_file
    assert ("twin.yml", "slug") in by_file  # duplicate slug
    assert not any(p.file.endswith("notes.txt") for p in caught.value.problems)


def test_load_spec_reads_yaml_dates_and_files(tmp_path, spec_data):
    spec_data["columns"][2]["generalize"]["reference_date"] = dt.date(2024, 6, 30)
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(spec_data, allow_unicode=True))
    spec = load_spec(path)
    assert spec.file == str(path)
    assert spec.column("age_band").generalize.reference_date == dt.date(2024, 6, 30)
    assert [s.slug for s in load_specs(tmp_path)] == ["card_test"]


def test_a_spec_must_publish_something(spec_data):
    spec_data["columns"] = [column(spec_data, "name")]
    spec_data.pop("privacy")
    spec_data.pop("analysis")
    spec_data["tier"] = "open"
    spec_data["sort_by"] = []
    assert has(problems_of(spec_data), "columns", "no column is published")


def test_references_time_column_and_history_parse_and_round_trip(spec_data):
    spec_data["source"]["options"]["until"] = "${VITAMIN_DATA_UNTIL:-null}"
    spec_data["references"] = {
        "brands": {"kind": "synthetic", "options": {"table": "listed_brands", "companies": "${COMPANIES:-40}"}}
    }
    spec_data["time_column"] = "month"
    spec_data["history"] = {"from": "2023-01", "to": "2023-12", "published": {"day": 3, "time": "09:00"}}
    spec = parse_spec(spec_data, variables={"VITAMIN_DATA_UNTIL": dt.date(2023, 5, 31)})
    assert spec.references["brands"].options == {"table": "listed_brands", "companies": 40}
    assert spec.source.options["until"] == dt.date(2023, 5, 31)
    assert spec.time_column == "month"
    assert (spec.history.first_month, spec.history.last_month) == (dt.date(2023, 1, 1), dt.date(2023, 12, 1))
    assert (spec.history.publish_day, spec.history.publish_time) == (3, "09:00")
    assert DatasetSpec.from_document(spec.to_document()) == spec
    # Without the variable, `until` is null: the whole source.
    assert parse_spec(spec_data).source.options["until"] is None
    # A reference's resolved options are part of the fingerprint, as the source's are.
    other = parse_spec(spec_data, variables={"VITAMIN_DATA_UNTIL": dt.date(2023, 5, 31), "COMPANIES": 41})
    assert other.fingerprint != spec.fingerprint


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"references": {"source": {"kind": "synthetic"}}}, "references.source", "other than `source`"),
        ({"references": {"Brands": {"kind": "synthetic"}}}, "references.Brands", "lower-case SQL name"),
        ({"references": {"brands": {"options": {}}}}, "references.brands.kind", "is required"),
        ({"references": ["brands"]}, "references", "must be a mapping"),
        ({"time_column": "amount"}, "time_column", "date or timestamp"),
        ({"time_column": "nope"}, "time_column", "date or timestamp"),
        ({"history": {"from": "2023-13", "to": "2024-01", "published": {"day": 3}}}, "history.from", "YYYY-MM"),
        ({"history": {"from": "2024-01", "to": "2023-01", "published": {"day": 3}}}, "history.to", "before"),
        ({"history": {"from": "2023-01", "to": "2023-02", "published": {"day": 31}}}, "history.published.day", "1-28"),
        (
            {"history": {"from": "2023-01", "to": "2023-02", "published": {"day": 2, "time": "25:00"}}},
            "history.published.time",
            "HH:MM",
        ),
        ({"history": {"from": "2023-01", "to": "2023-02"}}, "history.published", "is required"),
    ],
)
def test_references_time_column_and_history_are_checked(spec_data, change, field, reason):
    spec_data.update(change)
    assert has(problems_of(spec_data), field, reason)
