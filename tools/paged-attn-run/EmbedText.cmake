# cmake -DIN=file -DOUT=file.inc -P EmbedText.cmake: writes IN as a raw
# string literal.
file(READ ${IN} text)
file(WRITE ${OUT} "R\"PTX(${text})PTX\"\n")
