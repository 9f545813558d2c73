"""Recommendations on the user's device: a run as a static web bundle.

bundle (``liverec export-web``: encoder ONNX, compact item table, catalogue, manifest, the
JavaScript runtime), table (the compact item-table forms and how each scores), catalogue (the
source run's version and catalogue fingerprint), reference (the browser's computation in
Python, the reference path of the JavaScript client in ``clients/js``).
"""
