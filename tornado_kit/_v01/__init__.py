"""The 0.1 names whose 0.2 object lives under another name or in another module (private).

A deprecated 0.1 module (``tornado_kit.sse``, ...) forwards every name its
0.1 version had to the private modules that now hold it (see
``tornado_kit._deprecated``). Most names kept their name; the few that did
not are given here their 0.1 name, one module per 0.1 module, searched last.
The package goes away in 0.3 with the deprecated modules.
"""
