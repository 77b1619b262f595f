import pytest

from twofold.data import mixture as mixture_module
from twofold.data.mixture import Mixture, format_plan, load_mixture, plan, plot_plan
from twofold.errors import TwofoldError

COUNTS = {"en": 1_000_000, "fr": 100_000, "sw": 1_000}


@pytest.mark.parametrize("tau", [1.0, 0.7, 0.3])
def test_temperature_probabilities_follow_n_to_the_tau(tau):
    p = Mixture(temperature=tau).probabilities(COUNTS)
    total = sum(n ** tau for n in COUNTS.values())
    assert p == pytest.approx({g: n ** tau / total for g, n in COUNTS.items()})


def test_tau_one_is_size_proportional_and_smaller_tau_flattens():
    proportional = Mixture(temperature=1.0).probabilities(COUNTS)
    assert proportional["en"] == pytest.approx(1_000_000 / 1_101_000)
    assert Mixture().probabilities(COUNTS) == proportional  # the default
    flat = Mixture(temperature=0.3).probabilities(COUNTS)
    assert flat["sw"] > proportional["sw"] and flat["en"] < proportional["en"]


def test_include_restricts_a_phase_to_some_groups():
    p = Mixture(temperature=0.5, groups=("en", "fr")).probabilities(COUNTS)
    assert set(p) == {"en", "fr"} and sum(p.values()) == pytest.approx(1)


def test_explicit_weights_are_normalised():
    assert Mixture(weights={"en": 3, "fr": 1, "sw": 0}).probabilities(COUNTS) == {"en": 0.75, "fr": 0.25}


@pytest.mark.parametrize("kwargs, message", [
    ({"weights": {"en": 1, "fr": -1}}, "weights must be >= 0"),
    ({"weights": {"en": 0, "fr": 0}}, "all weights are zero"),
    ({"temperature": 0}, "temperature must be > 0"),
    ({"temperature": -0.5}, "temperature must be > 0"),
    ({"weights": {"en": 1}, "temperature": 0.5}, "either weights or temperature"),
    ({"groups": ()}, "groups lists no group"),
])
def test_bad_mixtures_are_refused(kwargs, message):
    with pytest.raises(TwofoldError, match=message):
        Mixture(**kwargs)


def test_group_named_in_a_phase_that_no_store_provides_is_refused():
    with pytest.raises(TwofoldError, match=r"group\(s\) de named in the phase are provided by no store"):
        Mixture(groups=("en", "de")).probabilities(COUNTS)
    with pytest.raises(TwofoldError, match="provided by no store"):
        Mixture(weights={"en": 1, "xx": 1}).probabilities(COUNTS)
    with pytest.raises(TwofoldError, match="have no weight"):
        Mixture(weights={"en": 1}, groups=("en", "fr")).probabilities(COUNTS)
    with pytest.raises(TwofoldError, match="every included group has weight 0"):
        Mixture(weights={"en": 1, "fr": 0}, groups=("fr",)).probabilities(COUNTS)


def test_plan_reports_epochs_for_a_budget_and_draws_a_png(tmp_path):
    rows = plan(Mixture(temperature=0.5), COUNTS, 1_000_000)
    assert [r.group for r in rows] == ["en", "fr", "sw"]
    for row in rows:
        assert row.tokens_drawn == pytest.approx(row.probability * 1_000_000)
        assert row.epochs == pytest.approx(row.tokens_drawn / COUNTS[row.group])
    assert rows[2].epochs > 1 > rows[0].epochs  # the small group is upsampled
    png = plot_plan(rows, tmp_path / "plan.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(TwofoldError, match="budget must be positive"):
        plan(Mixture(), COUNTS, 0)


def test_mixture_from_yaml(tmp_path):
    (tmp_path / "m.yaml").write_text("temperature: 0.7\ngroups: [en, fr]\n")
    assert load_mixture(tmp_path / "m.yaml") == Mixture(temperature=0.7, groups=("en", "fr"))
    (tmp_path / "bad.yaml").write_text("temprature: 0.7\n")
    with pytest.raises(TwofoldError, match="bad.yaml: unknown key"):
        load_mixture(tmp_path / "bad.yaml")


def test_top_takes_the_named_groups_then_the_largest_others():
    counts = {"en": 10, "fr": 1000, "de": 500, "sw": 5}
    assert Mixture(top=2).included(counts) == ["de", "fr"]
    assert Mixture(top=2, groups=("en",)).included(counts) == ["en", "fr"]
    p = Mixture(top=3, groups=("sw",), temperature=0.5).probabilities(counts)
    total = 1000 ** 0.5 + 500 ** 0.5 + 5 ** 0.5
    assert p == pytest.approx({"fr": 1000 ** 0.5 / total, "de": 500 ** 0.5 / total, "sw": 5 ** 0.5 / total})
    with pytest.raises(TwofoldError, match="top 5 asks for more groups than the stores have"):
        Mixture(top=5).probabilities(counts)
    with pytest.raises(TwofoldError, match="top 1 is smaller than the 2 groups"):
        Mixture(top=1, groups=("en", "fr"))


def test_boost_multiplies_n_to_the_tau_of_a_group():
    p = Mixture(temperature=0.5, boost={"sw": 3.0}).probabilities(COUNTS)
    raw = {g: n ** 0.5 * (3.0 if g == "sw" else 1.0) for g, n in COUNTS.items()}
    assert p == pytest.approx({g: w / sum(raw.values()) for g, w in raw.items()})
    with pytest.raises(TwofoldError, match="boost names group"):
        Mixture(temperature=0.5, groups=("en", "fr"), boost={"sw": 2}).probabilities(COUNTS)
    with pytest.raises(TwofoldError, match="boost factors must be > 0"):
        Mixture(boost={"sw": 0})


def test_plan_rows_go_from_the_most_sampled_group_down():
    counts = {"a": 10, "b": 1000, "c": 100}  # alphabetical order is not probability order
    rows = plan(Mixture(), counts, 1)  # a budget of one token is a budget
    assert [(r.group, r.tokens) for r in rows] == [("b", 1000), ("c", 100), ("a", 10)]
    assert rows[0].probability == pytest.approx(1000 / 1110) and rows[2].epochs == pytest.approx(1 / 1110)


def test_format_plan_prints_each_row_s_numbers():
    rows = plan(Mixture(weights={"en": 3, "fr": 1}), COUNTS, 2_000_000)
    lines = format_plan(rows).splitlines()
    assert lines[0].split() == ["group", "tokens", "p", "drawn", "epochs"]
    assert lines[1].split() == ["en", "1,000,000", "0.7500", "1,500,000", "1.50"]
    assert lines[2].split() == ["fr", "100,000", "0.2500", "500,000", "5.00"]
    assert len(lines) == 3


def test_plot_plan_draws_probabilities_and_epochs(tmp_path, monkeypatch):
    figures, real = [], mixture_module.save_figure
    monkeypatch.setattr(mixture_module, "save_figure", lambda f, p, **kw: (figures.append(f), real(f, p, **kw))[1])
    rows = plan(Mixture(temperature=0.5), COUNTS, 1_000_000)
    assert plot_plan(rows, tmp_path / "p.png", title="pretrain").is_file()
    (figure,) = figures
    top, bottom = figure.axes
    assert [b.get_height() for b in top.patches] == pytest.approx([r.probability for r in rows])
    assert [b.get_height() for b in bottom.patches] == pytest.approx([r.epochs for r in rows])
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["en", "fr", "sw"]
    assert [line.get_ydata()[0] for line in bottom.lines] == [1.0]  # the one-epoch line
    assert (top.get_ylabel(), bottom.get_ylabel()) == ("sampling probability", "epochs over budget")
    assert figure._suptitle.get_text() == "pretrain"


@pytest.mark.parametrize("mixture", [Mixture(weights={"en": 3, "fr": 1}), Mixture(temperature=0.7),
                                     Mixture(temperature=0.5, groups=("en", "sw")), Mixture()])
def test_a_mixture_round_trips_through_its_dict(mixture):
    data = mixture.to_dict()
    assert set(data) == {"weights", "temperature", "groups"}
    assert Mixture.from_dict(data) == mixture
    assert Mixture.from_dict(data).probabilities(COUNTS) == mixture.probabilities(COUNTS)
    with pytest.raises(TwofoldError, match=r"^mixture: unknown key\(s\) tau"):
        Mixture.from_dict({**data, "tau": 1})


def test_weights_and_groups_are_normalised():
    mixture = Mixture(weights={1: 2, "x": 1}, groups=["1", "x"])
    assert mixture.weights == {"1": 2.0, "x": 1.0} and mixture.groups == ("1", "x")


def test_groups_without_tokens():
    assert Mixture(temperature=0.5).probabilities({"a": 100, "b": 0}) == {"a": 1.0}  # left out
    assert Mixture(weights={"a": 1, "b": 0}).probabilities({"a": 10, "b": 0}) == {"a": 1.0}
    p = Mixture(temperature=0.5).probabilities({"a": 100, "b": 1})
    assert p["b"] == pytest.approx(1 / 11)  # one token is a group: 1^0.5 / (100^0.5 + 1)
    with pytest.raises(TwofoldError, match="group\\(s\\) b have no tokens"):
        Mixture(weights={"a": 1, "b": 1}).probabilities({"a": 10, "b": 0})
