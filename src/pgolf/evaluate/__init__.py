"""pgolf.evaluate"""
