"""pgolf.experiments"""
