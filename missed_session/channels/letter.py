"""The letter as a PDF, for the practice to print and post.

fpdf2 lays out a `Letter` (`missed_session.domain.letters`) on one US Letter page: the
address block where a #10 window envelope shows it, the date, the greeting, the words, the
sender, and at the foot how it is posted. The same letter always renders the same bytes
(the creation date is the letter's date, and fpdf2 derives the file id from the content),
so a retried step rewrites the file it wrote and the digest in the trail still matches.
The standard Helvetica font is used: nothing is embedded or fetched, and what it cannot
print is never given to it (`letters.printable`).
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from fpdf import FPDF

from missed_session.domain.letters import Letter

PAGE_FORMAT = "Letter"
MARGIN_MM = 25.0
ADDRESS_TOP_MM = 50.0
"""Where the address block starts: inside the window of a standard #10 envelope."""
LINE_MM = 5.5


def render(letter: Letter) -> bytes:
    """The letter's PDF: one page, deterministic for the same letter."""
    pdf = FPDF(orientation="portrait", unit="mm", format=PAGE_FORMAT)
    pdf.set_creation_date(datetime.combine(letter.dated, time(12), tzinfo=UTC))
    pdf.set_title("Letter")
    pdf.set_author(letter.sender)
    pdf.set_margins(MARGIN_MM, MARGIN_MM, MARGIN_MM)
    pdf.set_auto_page_break(auto=True, margin=MARGIN_MM)
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    pdf.cell(text=letter.sender, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(ADDRESS_TOP_MM)
    for line in letter.address:
        pdf.cell(text=line, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(ADDRESS_TOP_MM + 35)
    pdf.cell(text=f"{letter.dated.day} {letter.dated:%B %Y}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(LINE_MM * 2)
    pdf.cell(text=letter.greeting, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(LINE_MM)
    for paragraph in letter.paragraphs:
        pdf.multi_cell(w=0, h=LINE_MM, text=paragraph, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(LINE_MM)
    pdf.cell(text=letter.closing, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(LINE_MM)
    pdf.cell(text=letter.sender, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(-MARGIN_MM - LINE_MM)
    pdf.set_font("helvetica", size=8)
    pdf.cell(text=letter.notice)
    return bytes(pdf.output())
