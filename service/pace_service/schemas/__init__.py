"""Pydantic schemas at the HTTP boundary, in families: XCreate, XUpdate, XPublic, XsPublic."""
