"""Federated learning across hospitals on Flower: sites, strategies, clustered FL, deployment.

Layout (one job per module): ``partition`` (sites from a shared dataset), ``aggregation``
(pure numpy: weighted means, Algorithm 1, update clustering), ``privacy`` (epsilon of the
Gaussian mechanism), ``losses`` (focal loss), ``models`` (the paper's VGG16 variant), ``task``
(local training and evaluation, no Flower), ``client`` (the Flower client adapter),
``strategies`` (Flower strategies), ``engine`` (in-process driver of Flower's server loop),
``experiment`` (Table III), ``export`` (ONNX + model card), ``deploy`` and ``tls`` (the
TLS server/client) and ``secure`` (SecAgg+ on Flower's simulation engine).
Importing this package imports neither torch nor flwr.
"""
