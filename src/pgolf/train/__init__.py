"""pgolf.train"""
