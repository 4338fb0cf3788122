"""The noise kinds: each applies one pure noise function to a draft record.

`APPLIERS` maps a kind's stable name to the function that applies it to a `Draft`;
`APPLIES_TO` says which people a kind can concern (foreign-name kinds only foreigners);
`GROUPS` names kinds that exclude each other in one record (two swaps would undo each
other). The shares live in `renkei.dummy.noise`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from renkei.dummy import noise_address as addr
from renkei.dummy import noise_date as dates
from renkei.dummy import noise_foreign as foreign
from renkei.dummy import noise_kana as kana
from renkei.dummy import noise_kanji as kanji
from renkei.dummy import noise_names as names
from renkei.dummy.noise_records import SourcePerson

__all__ = ["APPLIERS", "APPLIES_TO", "GROUPS", "Applier", "Content", "Draft"]

_NAME: Final = ("family_name", "given_name")
_KANA: Final = ("family_kana", "given_kana")
_ALL_NAMES: Final = _NAME + _KANA

Content = tuple[str, str, str, str, str, str | None, str]


@dataclass(slots=True)
class Draft:
    """The business copy of one person while noise is applied to it."""

    family_name: str
    given_name: str
    family_kana: str
    given_kana: str
    birth_date_text: str
    postal_code: str | None
    address: str
    date_style: str

    def content(self) -> Content:
        """What the business file shows (two copies with equal content look identical)."""
        return (
            self.family_name,
            self.given_name,
            self.family_kana,
            self.given_kana,
            self.birth_date_text,
            self.postal_code,
            self.address,
        )

    def restore(self, content: Content) -> None:
        (
            self.family_name,
            self.given_name,
            self.family_kana,
            self.given_kana,
            self.birth_date_text,
            self.postal_code,
            self.address,
        ) = content


Applier = Callable[[random.Random, Draft, SourcePerson], None]
TextNoise = Callable[[random.Random, str], str]


def _one_field(noise: TextNoise, fields: Sequence[str]) -> Applier:
    """Apply `noise` to the first field (in random order) it changes."""

    def apply(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
        order = list(fields)
        rng.shuffle(order)
        for name in order:
            old: str = getattr(draft, name)
            new = noise(rng, old)
            if new != old:
                setattr(draft, name, new)
                return

    return apply


def _every_field(noise: TextNoise, fields: Sequence[str]) -> Applier:
    """Apply `noise` to each of `fields` (a system-wide habit, such as half-width kana)."""

    def apply(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
        for name in fields:
            setattr(draft, name, noise(rng, getattr(draft, name)))

    return apply


def _swap(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    draft.family_name, draft.given_name = names.swap_parts(draft.family_name, draft.given_name)
    draft.family_kana, draft.given_kana = names.swap_parts(draft.family_kana, draft.given_kana)


def _merge(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    sep = rng.choice(names.MERGE_SEPARATORS)
    draft.family_name, draft.given_name = names.merge_parts(
        draft.family_name, draft.given_name, sep
    )
    draft.family_kana, draft.given_kana = names.merge_parts(
        draft.family_kana, draft.given_kana, sep
    )


def _split(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    draft.family_name, draft.given_name = names.split_wrongly(
        rng, draft.family_name, draft.given_name
    )
    draft.family_kana, draft.given_kana = names.split_wrongly(
        rng, draft.family_kana, draft.given_kana
    )


def _alias(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    alias_name: str | None = getattr(person, "alias_family_name", None)
    if alias_name:
        draft.family_name = alias_name
        draft.family_kana = getattr(person, "alias_family_kana", None) or draft.family_kana
        return
    options = foreign.ALIASES.get(person.family_name)
    if options:
        draft.family_name, draft.family_kana = rng.choice(options)


def _has_alias(person: SourcePerson) -> bool:
    return person.is_foreign and bool(
        getattr(person, "alias_family_name", None) or person.family_name in foreign.ALIASES
    )


def _alpha_name(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    tokens = foreign.name_tokens(person.alpha_name or "")
    if tokens:
        draft.family_name, draft.given_name = tokens[0], " ".join(tokens[1:])


def _kanji_named_foreigner(person: SourcePerson) -> bool:
    return (
        person.is_foreign
        and bool(person.alpha_name)
        and not foreign.is_alphabetic(person.family_name)
    )


def _drop_middle(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    count = len(foreign.name_tokens(draft.given_name))
    if count < 2:
        return
    index = rng.randrange(count)
    draft.given_name = foreign.drop_token(draft.given_name, index)
    if len(foreign.name_tokens(draft.given_kana)) == count:
        draft.given_kana = foreign.drop_token(draft.given_kana, index)


def _reorder(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    draft.family_name, draft.given_name = foreign.reorder_western(
        draft.family_name, draft.given_name
    )
    draft.family_kana, draft.given_kana = foreign.reorder_western(
        draft.family_kana, draft.given_kana
    )


def _outdated(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    previous: str | None = getattr(person, "previous_address", None)
    if previous:
        draft.address = previous
        draft.postal_code = getattr(person, "previous_postal_code", None) or draft.postal_code


def _has_previous_address(person: SourcePerson) -> bool:
    return bool(getattr(person, "previous_address", None))


def _no_postal(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    draft.postal_code = None


def _era(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    draft.birth_date_text = dates.era_mistake(rng, person.birth_date, draft.date_style)


def _day_month(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    draft.birth_date_text = dates.swap_day_month(rng, person.birth_date, draft.date_style)


def _unknown_date(rng: random.Random, draft: Draft, person: SourcePerson) -> None:
    draft.birth_date_text = ""


def _is_foreign(person: SourcePerson) -> bool:
    return person.is_foreign


def _vu_plausible(person: SourcePerson) -> bool:
    # ヴ for ブ is a slip in foreign names only; a Japanese reading has no ヴ to lose.
    return person.is_foreign or "ヴ" in person.family_kana + person.given_kana


APPLIERS: Final[Mapping[str, Applier]] = MappingProxyType(
    {
        "kana_vu": _one_field(kana.swap_vu, _KANA),
        "kana_long_vowel": _one_field(kana.vary_long_vowel, _KANA),
        "kana_small": _one_field(kana.enlarge_small_kana, _KANA),
        "kana_halfwidth": _every_field(kana.to_halfwidth, _KANA),
        "kana_hiragana": _every_field(kana.to_hiragana, _KANA),
        "kana_ji_zu": _one_field(kana.swap_ji_zu, _KANA),
        "kana_wo": _one_field(kana.swap_wo, _KANA),
        "kanji_variant": _one_field(kanji.swap_kanji_variant, _NAME),
        "typo_similar": _one_field(kanji.typo_similar, _ALL_NAMES),
        "typo_drop": _one_field(kanji.drop_char, _ALL_NAMES),
        "typo_double": _one_field(kanji.double_char, _ALL_NAMES),
        "name_swap": _swap,
        "name_merge": _merge,
        "name_split": _split,
        "name_space": _one_field(names.insert_space, _ALL_NAMES),
        "addr_partial": _one_field(addr.partial_address, ("address",)),
        "addr_outdated": _outdated,
        "addr_notation": _one_field(addr.rewrite_notation, ("address",)),
        "addr_no_building": _one_field(addr.drop_building, ("address",)),
        "addr_no_prefecture": _one_field(addr.drop_prefecture, ("address",)),
        "addr_banchi_typo": _one_field(addr.typo_banchi, ("address",)),
        "postal_missing": _no_postal,
        "date_era": _era,
        "date_day_month": _day_month,
        "date_unknown": _unknown_date,
        "foreign_translit": _one_field(foreign.transliterate, _NAME),
        "foreign_kana": _one_field(foreign.kana_variant, _KANA),
        "foreign_order": _reorder,
        "foreign_middle_dropped": _drop_middle,
        "foreign_case": _every_field(foreign.change_case, _NAME),
        "foreign_alias": _alias,
        "foreign_alpha_name": _alpha_name,
    }
)

APPLIES_TO: Final[Mapping[str, Callable[[SourcePerson], bool]]] = MappingProxyType(
    {
        "kana_vu": _vu_plausible,
        "addr_outdated": _has_previous_address,
        "foreign_translit": _is_foreign,
        "foreign_kana": _is_foreign,
        "foreign_order": _is_foreign,
        "foreign_middle_dropped": _is_foreign,
        "foreign_case": _is_foreign,
        "foreign_alias": _has_alias,
        "foreign_alpha_name": _kanji_named_foreigner,
    }
)

# Kinds that exclude each other within one record.
GROUPS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "name_swap": "name_order",
        "name_merge": "name_order",
        "name_split": "name_order",
        "foreign_order": "name_order",
        "kana_halfwidth": "kana_script",
        "kana_hiragana": "kana_script",
        "date_era": "date",
        "date_day_month": "date",
        "date_unknown": "date",
        "foreign_alias": "name_source",
        "foreign_alpha_name": "name_source",
    }
)
