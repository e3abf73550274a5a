"""iomt.federated"""
