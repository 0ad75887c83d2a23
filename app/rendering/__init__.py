"""Send-time rendering of a campaign's HTML and text (issue #13), without a database.

- tokenizer.py: where the tags, their attributes and the comments of an HTML string are, as
  offsets into the string (a linear-time HTML tokenizer: the output is spliced, never
  re-serialised, so everything not rewritten stays byte-for-byte the input).
- destinations.py: which hrefs are tracked (http/https, not template syntax), the destination
  URL an href means (character references decoded as in an attribute), UTM parameters merged in.
- template.py: an HTML or text template compiled once per request into static pieces and
  slots (a destination, the pixel position), then filled per contact by joining strings.
"""
