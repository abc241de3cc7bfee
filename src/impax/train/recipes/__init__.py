"""Training recipes: one module per model family, each defining ``RECIPES`` — ``{name:``
:class:`~impax.train.recipes.common.Recipe` ``}`` — for ``impax train NAME``.

Which module serves which name is :mod:`impax.train.registry`'s one table; code outside
``impax.train`` goes through that registry, never into these modules.
"""
