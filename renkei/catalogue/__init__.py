"""The catalogue: affairs (事務), procedures (事務手続), info kinds (特定個人情報) with
their data-standard layouts, and the rules of who may ask whom for what.

The catalogue is data (``renkei/catalogue/data/``: TOML and CSV, UTF-8), loaded and
validated by `load_catalogue()`. The packaged catalogue is a SAMPLE (``Catalogue.sample``
is True); an operator replaces the directory with the official edition.

    cat = load_catalogue()
    decision = cat.check_rule("市町村長", "JT01010000074001", "市町村長",
                              "TM00000000000002", date(2025, 4, 1))
    issues = cat.validate_record("TM00000000000002", {"K001": "2024", ...}, date(2025, 4, 1))
"""

from renkei.catalogue.catalogue import Catalogue, check_value, parse_wire_date
from renkei.catalogue.loader import DATA_DIR, load_catalogue
from renkei.catalogue.models import (
    ITEM_TYPES,
    RULE_NOT_FOUND,
    RULE_NOT_IN_FORCE,
    UNKNOWN_INFO_KIND,
    UNKNOWN_PROCEDURE,
    Affair,
    CatalogueError,
    CodeList,
    Edition,
    InfoKind,
    LayoutItem,
    Procedure,
    Rule,
    RuleDecision,
    ValidationIssue,
)

__all__ = [
    "DATA_DIR",
    "ITEM_TYPES",
    "RULE_NOT_FOUND",
    "RULE_NOT_IN_FORCE",
    "UNKNOWN_INFO_KIND",
    "UNKNOWN_PROCEDURE",
    "Affair",
    "Catalogue",
    "CatalogueError",
    "CodeList",
    "Edition",
    "InfoKind",
    "LayoutItem",
    "Procedure",
    "Rule",
    "RuleDecision",
    "ValidationIssue",
    "check_value",
    "load_catalogue",
    "parse_wire_date",
]
