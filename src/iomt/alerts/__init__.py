"""iomt.alerts"""
