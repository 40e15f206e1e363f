"""The forges `POST /hooks/{forge}` accepts, by path name."""

from __future__ import annotations

from types import MappingProxyType

from minijenkin.forges import Forge, bitbucket, gitea, github, gitlab

FORGES = MappingProxyType({
    forge.name: forge
    for forge in (github.FORGE_SPEC, gitlab.FORGE_SPEC, gitea.GITEA, gitea.FORGEJO,
                  bitbucket.FORGE_SPEC)
})


def get_forge(name: str) -> Forge | None:
    return FORGES.get(name)
