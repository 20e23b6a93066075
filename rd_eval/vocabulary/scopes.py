"""Token scopes (docs/design.md §3.3): which tokens of a document a routing statistic counts.

Routing records store three disjoint base scopes per document; every named scope is a union of them. Pure data,
no torch, so readers (`rd-eval report`) can import it cheaply.
"""

from __future__ import annotations

BASE_SCOPES: tuple[str, ...] = ("prompt_text", "prompt_image", "generated")

# Named scopes as unions of base scopes, in the order specs and messages list them.
SCOPE_MEMBERS: dict[str, tuple[str, ...]] = {
    "all": BASE_SCOPES,
    "prompt": ("prompt_text", "prompt_image"),
    "generated": ("generated",),
    "text": ("prompt_text", "generated"),
    "image": ("prompt_image",),
}
TOKEN_SCOPES: tuple[str, ...] = tuple(SCOPE_MEMBERS)

# The scope a pair divergence is read in unless the user says otherwise (the image and its question).
DEFAULT_PAIR_SCOPE = "prompt"
# The choices offered where the default comes first (command-line options, report messages).
SCOPES_DEFAULT_FIRST: tuple[str, ...] = (DEFAULT_PAIR_SCOPE, *(s for s in TOKEN_SCOPES if s != DEFAULT_PAIR_SCOPE))

# The same unions as indices into BASE_SCOPES, for arrays laid out [..., base scope, ...].
SCOPE_INDICES: dict[str, tuple[int, ...]] = {
    name: tuple(BASE_SCOPES.index(member) for member in members) for name, members in SCOPE_MEMBERS.items()
}

