"""iomt.inference"""
