# A character model of any text, with make:  text -> token ids -> LSTM -> sampled text.
#
#   make -C models -f charlm.mk                     # the project's own README and tutorial
#   make -C models -f charlm.mk CORPUS=~/book.txt EPOCHS=20
#
# The corpus is cut 90/10 into training and validation text; the model reads
# a character id a step (embedding) and predicts the next one (lstm, then a
# softmax over the vocabulary), trained over one stream with --bptt.  The
# report gives validation bits per character (the loss in nats / ln 2)
# beside a unigram model's, and a sample of generated text.
CORPUS ?= ../README.md ../docs/tutorial.md
EPOCHS ?= 10
HIDDEN ?= 128
OUT ?= $(if $(KERASH_WORKDIR),$(KERASH_WORKDIR)/charlm-build,build-charlm)
export PATH := $(abspath ../.venv/bin):$(PATH)

.PHONY: all clean
.DELETE_ON_ERROR:

all: $(OUT)/report.txt

$(OUT)/corpus.txt: $(CORPUS)
	@mkdir -p $(@D)
	cat $(CORPUS) > $@

# ids.txt: one character id per line; chars.txt: the vocabulary (id 0 is <unk>)
$(OUT)/ids.txt $(OUT)/chars.txt: $(OUT)/corpus.txt
	rm -f $(OUT)/chars.txt
	kerash text encode $< -v $(OUT)/chars.txt > $(OUT)/ids.txt

# inputs are the ids, targets the next ones: the same file shifted by a line
$(OUT)/x.txt $(OUT)/y.txt $(OUT)/vx.txt $(OUT)/vy.txt: $(OUT)/ids.txt
	n=$$(wc -l < $<); cut=$$((n * 9 / 10)); \
	head -n $$((cut - 1)) $< > $(OUT)/x.txt; sed -n "2,$${cut}p" $< > $(OUT)/y.txt; \
	sed -n "$$((cut + 1)),$$((n - 1))p" $< > $(OUT)/vx.txt; tail -n +$$((cut + 2)) $< > $(OUT)/vy.txt

$(OUT)/charlm.model: $(OUT)/chars.txt
	v=$$(wc -l < $<); printf '1 1 1\ninput\nembedding %d 32\nlstm $(HIDDEN) sequences\ndense %d softmax\n' $$v $$v > $@

$(OUT)/charlm/model: $(OUT)/charlm.model
	model-init $< -o $(OUT)/charlm --seed 1 --force --vocabulary $(OUT)/chars.txt

$(OUT)/train.tsv: $(OUT)/charlm/model $(OUT)/x.txt $(OUT)/y.txt $(OUT)/vx.txt $(OUT)/vy.txt
	train $(OUT)/charlm -x $(OUT)/x.txt -y $(OUT)/y.txt --val-data $(OUT)/vx.txt --val-labels $(OUT)/vy.txt \
	    --bptt 64 --batch-size 32 --optimizer adam --lr 0.003 --clip-norm 5 --until-epoch $(EPOCHS) --seed 1 --quiet > /dev/null
	cp $(OUT)/charlm/trace.tsv $@

$(OUT)/report.txt: $(OUT)/train.tsv $(OUT)/y.txt $(OUT)/vy.txt
	awk -F '\t' 'NR > 1 && $$5 != "" { last = $$5 } END { printf "validation bits per character: %.3f\n", last / log(2) }' $< > $@.tmp
	awk 'NR == FNR { n[$$1]++; total++; next } { p = ($$1 in n) ? n[$$1] / total : 1 / total; bits -= log(p) / log(2); count++ } \
	    END { printf "a unigram model of the training text: %.3f\n", bits / count }' $(OUT)/y.txt $(OUT)/vy.txt >> $@.tmp
	echo "a sample:" >> $@.tmp
	kerash sample $(OUT)/charlm -n 400 --prime 'The ' --temperature 0.7 --seed 1 >> $@.tmp
	mv $@.tmp $@

clean:
	rm -rf $(OUT)
