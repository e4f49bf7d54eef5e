"""The floor for a Textual first paint: a bare app with a header, a table and a footer."""

from textual.app import App
from textual.widgets import DataTable, Footer, Header


class Bare(App):
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self):
        yield Header()
        yield DataTable()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Hardware", "Next")
        table.add_row("bare", "app")


if __name__ == "__main__":
    Bare().run()
