"""impax: learned implicit 3D shape representations (IM-NET, SIF/LDIF) in JAX.

Layers, lowest first (a layer never imports a higher one):
``conventions`` → ``geometry`` → ``data`` → ``models`` → ``train`` → ``inference`` →
``evaluation`` → ``report`` → ``commands``/``cli``.
"""

__version__ = "0.1.0"
