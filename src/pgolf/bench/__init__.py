"""pgolf.bench"""
