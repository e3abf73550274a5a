"""iomt.evaluation"""
