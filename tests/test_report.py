from linrepro.report import latex_to_mathml, remote_resources


def test_latex_becomes_mathml():
    out = latex_to_mathml(r"Inline $\hat q \cdot \hat k$ and display $$O(N^2 D)$$ and a price \$5.")
    assert out.count("<math") == 2 and "$" not in out.replace(r"\$", "")
    assert 'display="block"' in out


def test_remote_resources_are_found():
    html = ('<script src="https://cdn.example/require.js"></script><script>var a=1</script>'
            '<link rel="stylesheet" href="//fonts.example/x.css">')
    assert len(remote_resources(html)) == 2
    assert remote_resources("<script>inline()</script><script src='local.js'></script>") == []
