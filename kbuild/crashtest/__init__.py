"""crashtest"""
