"""Site affinity, a matcher written in Python: a conversation whose customer's country
(a text attribute of the conversation, e.g. `country = "pt"`) is listed in `sites`
favours representatives at the sites that serve that country, in the order given (the
first site listed adds `weight` points, the n-th `weight / n`); with `require = true`
the representatives at other sites, or with no site, are excluded. The site is a text
attribute of the representative (`site = "lisbon"`). With `idle_weight`, each
representative also gets `idle_weight` points per minute idle (at most 1,440), so the
longest idle at the best site goes first.

    [rule.plugin]
    name = "site-affinity"
    config = { sites = { pt = ["lisbon", "madrid"], es = ["madrid"] }, weight = 4.0, idle_weight = 0.001, require = true }

Other options: `attribute` (the conversation's attribute, default "country") and
`site_attribute` (the representative's, default "site"). A conversation without the
attribute, or of a country not listed, is left alone; so are queue candidates.
"""

from typing import Dict, List, Optional

from wit_world import exports

from switchboard_matcher import (
    Config,
    Err,
    Needs,
    Request,
    Symbols,
    Verdicts,
    VerdictsBuilder,
    all_eligible,
    conversation_text,
    representatives,
)


class Settings:
    __slots__ = (
        "attribute",
        "site_attribute",
        "sites",
        "weight",
        "idle_weight",
        "require",
        "no_site",
        "elsewhere",
    )

    def __init__(self, text: str) -> None:
        config = Config(text)
        self.attribute = config.text("attribute", "country")
        self.site_attribute = config.text("site_attribute", "site")
        self.weight = config.number("weight", 4.0)
        self.idle_weight = config.number("idle_weight", 0.0)
        self.require = config.flag("require", False)
        sites = config.table("sites")
        config.finish()
        if not sites:
            raise Err("invalid config: `sites` names no country")
        self.sites: Dict[str, List[str]] = {}
        for country, names in sites.items():
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                raise Err(f"invalid config: `sites.{country}` must be a non-empty list of site names")
            self.sites[country] = names
        # The reasons, once.
        self.no_site = f"has no `{self.site_attribute}`"
        self.elsewhere = {
            c: f"not at a site serving `{c}` ({', '.join(names)})" for c, names in self.sites.items()
        }
        for key in ("weight", "idle_weight"):
            if getattr(self, key) < 0:
                raise Err(f"invalid config: `{key}` must not be negative")


SETTINGS: Optional[Settings] = None


class Matcher(exports.Matcher):
    def init(self, config: str) -> Needs:
        global SETTINGS
        if SETTINGS is not None:
            raise Err("init was called twice")
        SETTINGS = Settings(config)
        # The idle times are computed and sent only when they count.
        return Needs.ATTRIBUTES | Needs.IDLE_TIME if SETTINGS.idle_weight else Needs.ATTRIBUTES

    def evaluate(self, request: bytes) -> Verdicts:
        s = SETTINGS
        if s is None:
            return all_eligible()
        request = Request(request)
        reps = representatives(request)
        if reps is None:
            return all_eligible()
        # Names to symbols, once per call.
        symbols = Symbols(request)
        country = conversation_text(request, symbols, s.attribute)
        if country is None:
            return all_eligible()
        country_name = symbols.text(country)
        sites = s.sites.get(country_name)
        if sites is None:
            return all_eligible()
        points: Dict[int, float] = {}
        for n, site in enumerate(sites, start=1):
            symbol = symbols.lookup(site)
            if symbol is not None and symbol not in points:
                points[symbol] = s.weight / n
        site_key = symbols.lookup(s.site_attribute)

        # Then integers per candidate, over the attribute columns. The loop runs in
        # Python per candidate, so it does the least it can: it reads lists (`tolist()`
        # once: indexing a list costs the sandbox's CPython a third of what indexing a
        # memoryview does), keeps its own counters, and only collects the candidates to
        # exclude and sets scores; the verdicts are built after it.
        runs = reps.columns.attributes
        if runs is None:  # init asked for them: the host always sends them
            raise RuntimeError("the host sent no attributes")
        keys, kinds, texts = runs.keys.tolist(), runs.kinds.tolist(), runs.texts.tolist()
        count = request.count
        scores = [0.0] * count
        no_site: List[int] = []  # no `site_key` attribute, or not a text
        elsewhere: List[int] = []  # at a site that does not serve the country
        k = -1
        i = 0  # the candidate's first attribute
        for end in runs.ends.tolist():
            k += 1
            # Its first attribute keyed `site_key` (a loop: a run holds few attributes).
            while i < end and keys[i] != site_key:
                i += 1
            if i < end and kinds[i] == 0:
                p = points.get(texts[i])
                if p is None:
                    elsewhere.append(k)
                else:
                    scores[k] = p
            else:
                no_site.append(k)
            i = end
        out = VerdictsBuilder(count)
        if s.require:
            # In the order of the candidates they first exclude (lists compare by their
            # first items, which differ), so the reasons are interned as `exclude` would.
            reasons = [(no_site, s.no_site), (elsewhere, s.elsewhere[country_name])]
            for ks, reason in sorted(reasons):
                if ks:
                    out.exclude_all(ks, reason)
        if s.idle_weight:
            idle = reps.columns.idle_minutes or [0.0] * count
            w = s.idle_weight
            scores = [score + w * minutes for score, minutes in zip(scores, idle)]
        out.set_scores(scores)
        return out.finish()
