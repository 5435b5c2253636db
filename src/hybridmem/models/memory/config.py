"""The memory kinds and knobs, each declared once. No torch: the flags read this before any model is built.

`MEMORY_KINDS` names every memory and the module that implements it. `MemoryConfig`'s fields are the knobs:
each declares its default, its help, its flag and its choices or bound (`knob(...)`), and every other place
a knob appears is derived from that declaration:

- the model: `MemoryConfig` itself, saved inside every model's config (the checkpoint's record of it);
- the flags: `add_memory_flags(parser)` gives `train world` one flag a knob (`--memory-top-k`), and
  `MemoryFlags` one config field a flag, so the training config, its run.json and --change know them all;
- the recipe: a budget is a `FrozenMemoryFlags` too, and `memory_flag_args(budget)` writes its stage flags;
- the bounds: a numeric knob's `rule` joins hybridmem.validation's range table, which the flags, the configs
  and the messages read.

Adding a knob is its line here and the memory that reads it; adding a memory is its module and its line in
`MEMORY_KINDS` (docs/ARCHITECTURE.md, "How to add things").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hybridmem.errors import ConfigError
from hybridmem.models.configs import dataclass_from_dict
from hybridmem.validation import Range, add_rules, check_choice, check_value

# Every memory kind and the module that implements it; the module registers its class under the kind
# (base.register_memory), and base.build_memory imports it the first time the kind is built. The recipe
# trains, exports and benchmarks each of them, in this order.
MEMORY_KINDS: dict[str, str] = {
    "full": "hybridmem.models.memory.base",  # the paper's "Baseline": every token attends to every token
    "window": "hybridmem.models.memory.window",  # the local window of latent frames only
    "fov": "hybridmem.models.memory.fov",  # window + the context frames whose frustums overlap the query's
    "hydra": "hybridmem.models.memory.hydra",  # window + top-K memory slices by affinity (the paper's)
}
DEFAULT_KIND = "full"


def knob(default, help: str, flag: str | None = None, choices: tuple = (), rule: Range | None = None):
    """A MemoryConfig field: `flag` (default: the field's name) is the destination of its `train world`
    flag; `choices` lists the values a text knob takes, `rule` bounds a numeric one."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "rule": rule})


@dataclass
class MemoryConfig:
    """Every knob of every memory; each variant reads the ones it needs. Saved inside model configs."""

    kind: str = field(default=DEFAULT_KIND, metadata={"help": "memory kind: " + " | ".join(MEMORY_KINDS)})
    window: int = knob(
        5,
        "local window of full-resolution latent frames, centred on the query, clamped to the sequence",
        flag="memory_window",
        rule=Range(1, 10**5),
    )
    top_k: int = knob(
        10,
        "retrieved memory slices (hydra) or context frames (fov) per query latent frame",
        flag="memory_top_k",
        # top-K 0 would retrieve nothing: fov memory would be the window memory, hydra's tokenizer unused
        rule=Range(1, 10**5, why="retrieved memory slices or context frames"),
    )
    tokenizer_kernel: tuple[int, int, int] = knob(
        (2, 2, 2),
        "hydra: the memory tokenizer's Conv3d kernel = stride over (frames, rows, columns) of tokens",
    )
    affinity: str = knob(
        "mean", "hydra: slice affinity, mean (the released code) | eq4 (paper Eq. 4)", choices=("mean", "eq4")
    )
    slice_ranking: str = knob(
        "affinity",
        "hydra: what ranks the memory slices for a query, affinity (q against the slices' keys) | fov "
        "(frustum overlap of the latent frames a slice covers)",
        choices=("affinity", "fov"),
    )
    memory_scope: str = knob(
        "all",
        "hydra: what the tokenizer compresses, all (context and target, the released code) | context",
        choices=("all", "context"),
    )
    # the official code scores a frame's mean query against a slice's mean key before RoPE, so the score is
    # content alone (models.world.OFFICIAL_CHOICES)
    affinity_rope: str = knob(
        "before",
        "hydra: score q and the memory keys before RoPE (official) | after",
        choices=("before", "after"),
    )
    # "official": the official code's get_compressed_freqs_cis_3d: time at the centre of the latent frames
    # a slice covers (2i + 0.5 for kernel 2), rows and columns at the first cell a token covers (2i)
    token_positions: str = knob(
        "official",
        "hydra: RoPE positions of the memory tokens, official (t 2i+0.5, h/w 2i) | centre (of the cells "
        "covered)",
        choices=("official", "centre"),
    )
    fov_points: int = knob(
        256,
        "fov: Monte Carlo points sampled in the query frustum",
        rule=Range(1, 10**6, why="points a frame"),
    )
    fov_near: float = knob(
        0.5, "fov: nearest depth of those points, metres", rule=Range(0.0, 1e4, low_open=True, why="metres")
    )
    fov_far: float = knob(
        30.0, "fov: farthest depth of those points, metres", rule=Range(0.0, 1e4, low_open=True, why="metres")
    )
    query_chunk: int = knob(
        8,
        "latent frames attended at once (bounds memory, same result); 0 = all at once",
        rule=Range(0, 10**5, why="0 = all at once"),
    )

    # Values of fields a config saved before the field existed was trained with (a model folder's
    # config.json written by an older hybridmem); a new config gets the defaults above.
    SAVED_BEFORE_FIELD = {"affinity_rope": "after", "token_positions": "centre"}
    # Fields renamed since: what an older config.json (or run.json, budget record) calls them.
    RENAMED = {"retrieval": "slice_ranking"}

    @classmethod
    def from_dict(cls, data: dict, what: str = "MemoryConfig", saved: bool = True) -> MemoryConfig:
        """A config from a dict. saved: the dict is a saved model's (its config.json), so a field missing
        from it takes the value older models were trained with; otherwise (a preset, an API call) the
        default above."""
        if isinstance(data, dict):
            data = {**(cls.SAVED_BEFORE_FIELD if saved else {}), **renamed(data)}
        return dataclass_from_dict(cls, data, what)

    def validate(self) -> MemoryConfig:
        """Raise ConfigError naming the flag of the first knob out of its choices or bound."""
        check_choice(self.kind, MEMORY_KINDS, "memory kind", "kinds")
        if len(self.tokenizer_kernel) != 3 or min(self.tokenizer_kernel) < 1:
            raise ConfigError(
                f"--tokenizer-kernel must be three positive ints like 2,2,2, got {self.tokenizer_kernel}"
            )
        self.tokenizer_kernel = tuple(int(size) for size in self.tokenizer_kernel)  # JSON gives a list
        for item in KNOBS:
            value = getattr(self, item.name)
            if item.choices:
                check_choice(value, item.choices, item.option)
            if item.rule is not None:
                check_value(item.flag, value)
        if not self.fov_near < self.fov_far:
            raise ConfigError(f"--fov-near {self.fov_near} must be below --fov-far {self.fov_far}")
        return self


def renamed(data: dict) -> dict:
    """`data` with the knobs' old names (MemoryConfig.RENAMED) replaced by their new ones."""
    return {MemoryConfig.RENAMED.get(key, key): value for key, value in data.items()}


# --- the flags, derived from the knobs ------------------------------------------------------------------


@dataclass(frozen=True)
class Knob:
    """One MemoryConfig field as a flag: `flag` its destination, `default` its value as the flag holds it
    (a tuple knob's flag is text: "2,2,2")."""

    name: str
    flag: str
    default: int | float | str
    help: str
    choices: tuple
    rule: Range | None
    is_tuple: bool

    @property
    def option(self) -> str:
        return _option(self.flag)

    def to_config(self, value):
        """The flag's value as the MemoryConfig field holds it."""
        if not self.is_tuple:
            return value
        try:
            return tuple(int(size) for size in value.split(","))
        except ValueError:
            raise ConfigError(
                f"{self.option} must be comma-separated ints like {self.default}, got '{value}'"
            ) from None


def _option(flag: str) -> str:
    return "--" + flag.replace("_", "-")


def _knob(spec: dataclasses.Field) -> Knob:
    default, meta = spec.default, spec.metadata
    is_tuple = isinstance(default, tuple)
    if is_tuple:
        default = ",".join(str(size) for size in default)
    flag = meta["flag"] or spec.name
    return Knob(spec.name, flag, default, meta["help"], meta["choices"], meta["rule"], is_tuple)


# every knob but the kind (which `train world --memory` and the recipe's loop over MEMORY_KINDS choose)
KNOBS: tuple[Knob, ...] = tuple(
    _knob(spec) for spec in dataclasses.fields(MemoryConfig) if spec.name != "kind"
)
MEMORY_FLAGS: tuple[str, ...] = tuple(item.flag for item in KNOBS)
# the flags' values a run recorded before their knob existed was trained with (SAVED_BEFORE_FIELD, by flag)
SAVED_BEFORE_FLAG: dict[str, object] = {
    item.flag: MemoryConfig.SAVED_BEFORE_FIELD[item.name]
    for item in KNOBS
    if item.name in MemoryConfig.SAVED_BEFORE_FIELD
}
add_rules({item.flag: item.rule for item in KNOBS if item.rule is not None})


def _flags_dataclass(name: str, frozen: bool) -> type:
    return dataclasses.make_dataclass(
        name,
        [(item.flag, type(item.default), field(default=item.default)) for item in KNOBS],
        kw_only=True,
        frozen=frozen,
    )


# Bases of the configs that carry the memory flags: one keyword-only field a knob, named by its flag,
# holding the flag's value (WorldTrainConfig; the recipe's frozen Budget).
MemoryFlags = _flags_dataclass("MemoryFlags", frozen=False)
FrozenMemoryFlags = _flags_dataclass("FrozenMemoryFlags", frozen=True)
MemoryFlags.__module__ = FrozenMemoryFlags.__module__ = __name__


def memory_config(kind: str, flags) -> MemoryConfig:
    """The validated MemoryConfig of memory `kind` with the knobs `flags` (a MemoryFlags) holds."""
    values = {item.name: item.to_config(getattr(flags, item.flag)) for item in KNOBS}
    return MemoryConfig(kind=kind, **values).validate()


def add_memory_flags(parser) -> None:
    """One flag a knob, default and help from its declaration (a renamed knob also answers to its old
    flag, so recorded commands still run)."""
    for item in KNOBS:
        kind = type(item.default)
        old = [_option(before) for before, after in MemoryConfig.RENAMED.items() if after == item.name]
        parser.add_argument(
            item.option,
            *old,
            dest=item.flag,
            type=kind if kind is not str else None,
            default=item.default,
            help=item.help + (f" (formerly {', '.join(old)})" if old else ""),
        )


def memory_flag_args(flags) -> list[str]:
    """The command-line flags that set every knob to what `flags` (a MemoryFlags) holds."""
    return [text for item in KNOBS for text in (item.option, str(getattr(flags, item.flag)))]
