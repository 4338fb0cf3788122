"""`renkei dummy stats`: how the synthetic 新宿区 compares with the figures it was drawn from.

`compute` summarises a population (age structure by 5-year band and sex against
`data/shinjuku_age_structure.csv` scaled to the same total, foreign share, households,
business data, change records); `report_text` renders it as a short Markdown report;
`plot_pyramid` draws the age pyramid (PNG, matplotlib's Agg backend; labels in English
because this machine has no Japanese font).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from renkei.dummy import business, tables
from renkei.dummy.households import HouseholdKind
from renkei.dummy.model import RESIDENT, SHINJUKU, SynthPopulation

__all__ = ["BandRow", "Stats", "compute", "plot_pyramid", "report_text"]

_VARIANT_CHARS = frozenset("髙﨑邉邊齊齋澤濱德櫻國廣嶋冨曾龍𠮷")


@dataclass(frozen=True, slots=True)
class BandRow:
    band: str
    male: int
    female: int
    foreign_male: int
    foreign_female: int
    table_male: float  # the published table scaled to the synthetic total
    table_female: float
    table_foreign: float

    @property
    def foreign(self) -> int:
        return self.foreign_male + self.foreign_female


@dataclass(slots=True)
class Stats:
    seed: int
    reference_date: str
    people: int
    foreign: int
    households: int
    single_households: int
    bands: list[BandRow]
    nationalities: list[tuple[str, int]]
    business: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    non_residents: int = 0
    variant_names: int = 0
    table_total: int = 0

    @property
    def foreign_share(self) -> float:
        return self.foreign / self.people if self.people else 0.0

    @property
    def single_share(self) -> float:
        return self.single_households / self.households if self.households else 0.0

    def group_share(self, lo: int, hi: int, *, table: bool = False) -> float:
        """Share of people aged lo–hi (band starts), synthetic or table."""
        rows = [b for b in self.bands if lo <= int(b.band.rstrip("+").split("-")[0]) <= hi]
        if table:
            part = sum(b.table_male + b.table_female for b in rows)
            total = sum(b.table_male + b.table_female for b in self.bands)
        else:
            part = sum(b.male + b.female for b in rows)
            total = self.people
        return part / total if total else 0.0

    def max_band_gap(self) -> float:
        """Largest |synthetic − table| over bands and sexes, in percentage points of the total."""
        if not self.people:
            return 0.0
        return max(
            max(abs(b.male - b.table_male), abs(b.female - b.table_female)) / self.people * 100
            for b in self.bands
        )


def compute(pop: SynthPopulation, lg_code: str = SHINJUKU) -> Stats:
    ref = pop.reference_date
    residents = [p for p in pop.persons if p.status == RESIDENT and p.lg_code == lg_code]
    bands = tables.age_structure()
    counts: Counter[tuple[int, str]] = Counter()
    foreign_by_band: Counter[tuple[int, str]] = Counter()
    for p in residents:
        age = p.age_on(ref)
        i = min(age // 5, len(bands) - 1)
        counts[(i, p.sex)] += 1
        if p.is_foreign:
            foreign_by_band[(i, p.sex)] += 1
    table_total = sum(b.total for b in bands)
    scale = len(residents) / table_total if table_total else 0.0
    rows = [
        BandRow(
            b.band,
            counts[(i, "1")],
            counts[(i, "2")],
            foreign_by_band[(i, "1")],
            foreign_by_band[(i, "2")],
            (b.japanese_male + b.foreign_male) * scale,
            (b.japanese_female + b.foreign_female) * scale,
            (b.foreign_male + b.foreign_female) * scale,
        )
        for i, b in enumerate(bands)
    ]
    households = list(pop.households_of(lg_code))
    stats = Stats(
        seed=pop.seed,
        reference_date=ref.isoformat(),
        people=len(residents),
        foreign=sum(1 for p in residents if p.is_foreign),
        households=len(households),
        single_households=sum(1 for h in households if h.kind == HouseholdKind.SINGLE
                              and sum(1 for m in h.members if m.status == RESIDENT) == 1),  # fmt: skip
        bands=rows,
        nationalities=Counter(p.nationality for p in residents if p.is_foreign).most_common(8),
        table_total=table_total,
    )
    for system in business.SYSTEMS:
        stats.business[system] = sum(1 for _ in business.records(pop, lg_code, system))
    stats.changes = dict(Counter(c.kind for c in pop.changes if c.lg_code == lg_code))
    stats.non_residents = len(pop.non_resident_records.get(lg_code, ()))
    stats.variant_names = sum(1 for p in residents if not _VARIANT_CHARS.isdisjoint(p.family_name))
    return stats


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def report_text(s: Stats, picture: str | None = None) -> str:
    """A short Markdown report (Japanese headings, figures as measured)."""
    lines = [
        "# 合成人口の統計 / synthetic population report",
        "",
        f"seed {s.seed}, 基準日 {s.reference_date}; 年齢構成の比較対象: renkei/dummy/data/shinjuku_age_structure.csv"
        "（概数。出典と作り方は docs/dummy.md）",
        "",
        "| 項目 | 合成 | 表 |",
        "|---|---:|---:|",
        f"| 人口 | {s.people:,} | {s.table_total:,}（縮尺を合わせて比較） |",
        f"| 外国人の割合 | {_pct(s.foreign_share)} | {_pct(sum(b.table_foreign for b in s.bands) / max(1, s.people))} |",
        f"| 0–14歳 | {_pct(s.group_share(0, 10))} | {_pct(s.group_share(0, 10, table=True))} |",
        f"| 15–64歳 | {_pct(s.group_share(15, 60))} | {_pct(s.group_share(15, 60, table=True))} |",
        f"| 65歳以上 | {_pct(s.group_share(65, 95))} | {_pct(s.group_share(65, 95, table=True))} |",
        f"| 5歳階級×男女の最大の差 | {s.max_band_gap():.2f} ポイント | — |",
        f"| 世帯数 | {s.households:,} | — |",
        f"| 単独世帯の割合 | {_pct(s.single_share)} | 約3分の2 |",
        f"| 1世帯あたり人員 | {s.people / max(1, s.households):.2f} | — |",
        f"| 旧字・異体字の氏 | {s.variant_names:,}（{_pct(s.variant_names / max(1, s.people))}） | — |",
        "",
        "国籍（上位）: " + "、".join(f"{code} {n:,}" for code, n in s.nationalities),
        "",
        "業務データ: " + "、".join(f"{business.system_label(k)} {v:,}件" for k, v in s.business.items()),
        "",
        "異動（期間内）: " + "、".join(f"{k} {v:,}" for k, v in sorted(s.changes.items())),
        "",
        f"住登外者レコード（ノイズ入り）: {s.non_residents:,}件",
        "",
        "| 年齢 | 男（合成） | 男（表） | 女（合成） | 女（表） | 外国人（合成） | 外国人（表） |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for b in s.bands:
        lines.append(
            f"| {b.band} | {b.male:,} | {b.table_male:,.0f} | {b.female:,} | {b.table_female:,.0f} "
            f"| {b.foreign:,} | {b.table_foreign:,.0f} |"
        )
    if picture:
        lines += ["", f"![age pyramid]({picture})"]
    return "\n".join(lines) + "\n"


def _outline(values: list[float]) -> tuple[list[float], list[float]]:
    """A stepped outline: value i spans band i (y from i − 0.5 to i + 0.5)."""
    xs: list[float] = []
    ys: list[float] = []
    for i, v in enumerate(values):
        xs += [v, v]
        ys += [i - 0.5, i + 0.5]
    return xs, ys


def plot_pyramid(s: Stats, path: Path) -> None:
    """Age pyramid of the synthetic residents (bars) against the table (black outline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = list(range(len(s.bands)))
    labels = [b.band for b in s.bands]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 6.5), gridspec_kw={"width_ratios": [3, 1.3]})
    ax.barh(y, [-b.male for b in s.bands], color="#4a7ab5", height=0.85, label="synthetic men")
    ax.barh(y, [b.female for b in s.bands], color="#d9776f", height=0.85, label="synthetic women")
    ax.barh(y, [-b.foreign_male for b in s.bands], color="#24466f", height=0.85, label="of whom foreign")
    ax.barh(y, [b.foreign_female for b in s.bands], color="#8e3a33", height=0.85)
    ax.plot(*_outline([-b.table_male for b in s.bands]), color="black", linewidth=1.2, label="table (scaled)")
    ax.plot(*_outline([b.table_female for b in s.bands]), color="black", linewidth=1.2)
    ax.set_yticks(y, labels)
    ax.set_xlabel("persons")
    widest = max(max(b.male, b.female, b.table_male, b.table_female) for b in s.bands) * 1.05
    ax.set_xlim(-widest, widest)
    ticks = [t for t in ax.get_xticks() if -widest <= t <= widest]
    ax.set_xticks(ticks, [f"{abs(int(t)):,}" for t in ticks])
    ax.axvline(0, color="grey", linewidth=0.6)
    ax.set_title(f"Synthetic Shinjuku, {s.people:,} residents on {s.reference_date} (seed {s.seed})")
    ax.legend(loc="lower right", fontsize=8)
    share = [b.foreign / max(1, b.male + b.female) * 100 for b in s.bands]
    table_share = [b.table_foreign / max(1.0, b.table_male + b.table_female) * 100 for b in s.bands]
    ax2.barh(y, share, color="#7a9a5a", height=0.85, label="synthetic")
    ax2.plot(*_outline(table_share), color="black", linewidth=1.2, label="table")
    ax2.set_yticks(y, labels)
    ax2.set_xlabel("foreign residents, % of age band")
    ax2.legend(loc="lower right", fontsize=8)
    fig.text(0.01, 0.01, "Table: renkei/dummy/data/shinjuku_age_structure.csv (approximation of the "
             "Shinjuku resident register; sources in docs/dummy.md). All people are synthetic.",
             fontsize=7)  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
