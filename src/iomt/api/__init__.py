"""iomt.api"""
